"""Done when: two instances of the worker on one machine, set up as README.md's guide
("Several workers on one node") says, against one development Manager: both run tasks at
the same time, each child sees only its own device, nothing of the worker's secrets
reaches a child, and a second process of an instance is refused."""
import json
import os
import re
import signal
import subprocess
import sys

import pytest
import requests

from fworker import instance, proctree
from tests.support import jobs
from tests.support.waiting import wait_until
from tests.support.workers import FAST, free_port

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET_ENV = "FWORKER_TEST_TOKEN"  # the worker's own namespace: never a child's
SECRET_VALUE = "fw-own-token-8c1f"
REGISTRATION_SECRET = "registration-key-5d2e-long-enough-for-hmac-sha256"

# Each task waits until both have started (so they run at the same time), then prints
# what its child sees.
TOGETHER = ("import json, os, sys, time\n"
            "folder, me = sys.argv[1], sys.argv[2]\n"
            "open(os.path.join(folder, me), 'w').close()\n"
            "deadline = time.monotonic() + 60\n"
            "while len(os.listdir(folder)) < 2 and time.monotonic() < deadline:\n"
            "    time.sleep(0.05)\n"
            "print('together', len(os.listdir(folder)) >= 2, flush=True)\n"
            "print('device', json.dumps(os.environ.get('CUDA_VISIBLE_DEVICES')), flush=True)\n")


def readme_config() -> str:
    """The guide's /etc/flamenco-worker.cfg, as README.md shows it."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    guide = readme.split("## Several workers on one node", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```ini\n(.*?)```", guide, re.S).group(1)


def guide_config(root, manager_url: str, ports: dict[str, int]) -> str:
    """The guide's file with this test's Manager, folders and free ports (the rest as is)."""
    text = readme_config()
    text = text.replace("http://manager:8080/", manager_url)
    text = text.replace("/var/lib/flamenco-worker/", f"{root}/lib/").replace("/var/log/flamenco-worker/",
                                                                              f"{root}/log/")
    for port, free in ports.items():
        text = text.replace(f"metrics_port = {port}", f"metrics_port = {free}")
    fast = "".join(f"{key} = {value}\n" for key, value in FAST.items())
    extra = f"worker_registration_secret = {REGISTRATION_SECRET}\n"
    return text.replace("[flamenco-worker]\n", "[flamenco-worker]\n" + fast + extra, 1)


def start(root, name: str, env: dict, *args: str) -> subprocess.Popen:
    log = open(root / f"{name}.out", "wb")  # noqa: SIM115  (the child writes it; closed by the test)
    return subprocess.Popen([sys.executable, "-m", "fworker", "-c", str(root / "flamenco-worker.cfg"), "-v",
                             *args], cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_two_instances_as_the_readme_guide_says(tmp_path, make_manager):
    manager = make_manager(registration_secret=REGISTRATION_SECRET)
    ports = {9100: free_port(), 9101: free_port(), 9102: free_port()}
    (tmp_path / "home").mkdir()
    (tmp_path / "lib").mkdir()
    (tmp_path / "log").mkdir()
    (tmp_path / "flamenco-worker.cfg").write_text(guide_config(tmp_path, manager.url, ports))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("FWORKER_", "FLAMENCO_WORKER_"))}
    env.update(HOME=str(tmp_path / "home"), PYTHONUNBUFFERED="1", SECRET_ENV_NAME="x",
               **{SECRET_ENV: SECRET_VALUE}, HOLDS_THE_KEY=f"key={REGISTRATION_SECRET}")

    # The guide's first command: --check-config for every instance.
    for name, device in (("gpu0", "0"), ("gpu1", "1"), ("cpu", "")):
        checked = subprocess.run([sys.executable, "-m", "fworker", "-c", str(tmp_path / "flamenco-worker.cfg"),
                                  "--instance", name, "--check-config"], cwd=tmp_path, env=env,
                                 capture_output=True, text=True, timeout=120)
        assert checked.returncode == 0, checked.stderr
        assert f"instance: {name}" in checked.stdout
        assert f"update queue: {tmp_path}/lib/queue@{name}.db" in checked.stdout
        assert f"child environment: CUDA_VISIBLE_DEVICES={device or chr(39) * 2} " in checked.stdout
        assert REGISTRATION_SECRET not in checked.stdout

    started = tmp_path / "started"
    started.mkdir()
    run_env = {"name": "exec", "settings": {"cmd": "env"}}
    task_ids = manager.submit_job(jobs.job(*[
        jobs.task(f"t{i}", [jobs.exec_cmd(TOGETHER, str(started), f"t{i}"), run_env], task_type="blender-render")
        for i in range(2)]))["task_ids"]

    # The service manager's way (the unit passes --instance; a plist sets the variable).
    workers = {"gpu0": start(tmp_path, "gpu0", env, "--instance", "gpu0"),
               "gpu1": start(tmp_path, "gpu1", dict(env, **{instance.ENV_VAR: "gpu1"}))}
    try:
        wait_until(lambda: all(manager.task(t)["status"] in ("completed", "failed") for t in task_ids)
                   or any(p.poll() is not None for p in workers.values()), timeout=120, what="both tasks")
        assert [manager.task(t)["status"] for t in task_ids] == ["completed", "completed"]
        by_worker = {}
        for task_id in task_ids:
            log = manager.task_log(task_id)
            assert "together True" in log  # both ran at the same time
            assert SECRET_VALUE not in log and REGISTRATION_SECRET not in log and SECRET_ENV not in log
            # Of the worker's own variables only the marks that find a child's processes again.
            own = set(re.findall(r"\b((?:FWORKER|FLAMENCO_WORKER)_\w+)=", log))
            assert own == {proctree.TOKEN_VAR, proctree.OWNER_VAR}, own
            assert "HOLDS_THE_KEY" not in log and "SECRET_ENV_NAME=x" in log  # `env` ran and printed
            device = json.loads(re.search(r"device (.+)", log).group(1))
            by_worker[manager.task(task_id)["worker"]] = (device, log)
        nicknames = {w["id"]: w["nickname"] for w in manager.store.workers()}
        seen = {nicknames[w].rsplit("@", 1)[1]: device for w, (device, _log) in by_worker.items()}
        assert seen == {"gpu0": "0", "gpu1": "1"}
        for _w, (device, log) in by_worker.items():
            assert log.endswith(f": CUDA_VISIBLE_DEVICES={device}") or f": CUDA_VISIBLE_DEVICES={device}\n" in log
            assert ": OMP_NUM_THREADS=2\n" in log or log.endswith(": OMP_NUM_THREADS=2")

        # Every instance's own state: queue, credentials, logs, metrics.
        for name, port in (("gpu0", ports[9100]), ("gpu1", ports[9101])):
            assert (tmp_path / "lib" / f"queue@{name}.db").exists()
            credentials = tmp_path / "home" / f".flamenco-worker@{name}.cfg"
            assert oct(credentials.stat().st_mode & 0o777) == "0o600"
            assert (tmp_path / "log" / f"worker@{name}.log").stat().st_size > 0
            assert list((tmp_path / "log" / f"tasks@{name}").glob("task-*.txt"))
            assert requests.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 200
        assert not (tmp_path / "home" / ".flamenco-worker.cfg").exists()

        # A second process of an instance is refused, naming it.
        duplicate = subprocess.run([sys.executable, "-m", "fworker", "-c", str(tmp_path / "flamenco-worker.cfg"),
                                    "--instance", "gpu0"], cwd=tmp_path, env=env, capture_output=True, text=True,
                                   timeout=120)
        assert duplicate.returncode == 6, duplicate.stderr
        assert "instance 'gpu0'" in duplicate.stderr and "queue@gpu0.db.lock" in duplicate.stderr
    finally:
        for proc in workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in workers.values():
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    assert [proc.returncode for proc in workers.values()] == [0, 0]
