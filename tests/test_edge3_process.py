"""The worker as a process (``python -m fworker``) against either development Manager:
SIGTERM in the middle of a task (v3: no failure, the sign-off re-queues it; 2.x: the task
is reported failed, as it always was), the banner naming the dialect, and --check-config
asking the Manager which generation it is."""
import os
import signal
import subprocess
import sys

import pytest

from fworker.devmanager.v3 import jobs as jobs3
from tests.support import jobs as jobs2
from tests.support.waiting import wait_until

DEADLINE = 30


@pytest.mark.slow
def test_sigterm_on_v3_fails_nothing_flushes_signs_off_and_the_task_is_requeued(make_manager3, worker_process):
    manager = make_manager3()
    done = manager.submit_job(jobs3.job("job", [jobs3.task("t0", [jobs3.echo("before the sleep"),
                                                                     jobs3.sleep(600)], "misc")]))
    task_id = done["task_ids"][0]
    w = worker_process(manager.url)
    wait_until(lambda: "before the sleep" in manager.task_log(task_id), DEADLINE, what="the task running")
    w.send(signal.SIGTERM)
    assert w.wait(DEADLINE) == 0
    updates = manager.task_updates(task_id)
    assert [u.get("taskStatus") for u in updates if u.get("taskStatus")] == ["active"], "no failure sent"
    names = [r["operation"] for r in manager.requests]
    assert names[-1] == "signOff"
    task = manager.task(task_id)
    assert task["status"] == "queued" and "signed off" in task["activity"], task
    assert "not sent" not in w.output, "everything queued was flushed before the sign-off"
    assert "protocol:" in w.output and "  protocol:" in w.output, "the banner and its last line name the dialect"
    assert f"protocol: v3 (Flamenco Manager {manager_version(manager)})" in w.output
    assert manager.invalid_requests() == []


@pytest.mark.slow
def test_sigterm_on_2x_still_reports_the_task_failed(make_manager, worker_process):
    manager = make_manager("m2.sqlite")
    _job_id, task_id = jobs2.submit(manager, jobs2.echo("before the sleep"), jobs2.sleep(600))
    w = worker_process(manager.url)
    wait_until(lambda: "before the sleep" in manager.task_log(task_id), DEADLINE, what="the task running")
    w.send(signal.SIGTERM)
    assert w.wait(DEADLINE) == 0
    assert manager.task(task_id)["status"] == "failed"
    assert "protocol: v2" in w.output


def manager_version(manager):
    import requests

    return requests.get(manager.url.rstrip("/") + "/api/v3/version", timeout=10).json()["version"]


def check_config(tmp_path, manager_url, protocol="auto"):
    cfg = tmp_path / "worker.cfg"
    cfg.write_text(f"[flamenco-worker]\nmanager_url = {manager_url}\nmanager_protocol = {protocol}\n")
    out = subprocess.run([sys.executable, "-m", "fworker", "-c", str(cfg), "--check-config"], capture_output=True,
                         text=True, cwd=tmp_path, env=dict(os.environ, HOME=str(tmp_path)), timeout=120)
    assert out.returncode == 0, out.stderr
    return [line for line in out.stdout.splitlines() if line.startswith("manager protocol: ")]


@pytest.mark.slow
def test_check_config_asks_the_manager_which_generation_it_is(make_manager3, make_manager, tmp_path):
    three, two = make_manager3(), make_manager("m2.sqlite")
    (line,) = check_config(tmp_path, three.url)
    assert line.startswith("manager protocol: v3 (auto: asked ") and manager_version(three) in line
    (line,) = check_config(tmp_path, two.url)
    assert line.startswith("manager protocol: v2 (auto: asked ")
    (line,) = check_config(tmp_path, "http://127.0.0.1:9/")
    assert line.startswith("manager protocol: auto (asked ") and "asks again at start" in line
    (line,) = check_config(tmp_path, three.url, "v2")
    assert line == "manager protocol: v2 (forced by manager_protocol)"
    assert three.invalid_requests() == []
