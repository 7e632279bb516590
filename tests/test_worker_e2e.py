"""The real worker process against the real development Manager over HTTP."""
import os
import signal
import stat
import sys

import psutil
import pytest

from tests.support.jobs import echo, exec_cmd, job, one_task_job, sleep, task
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow  # the real worker process, each test a second or more


def task_status(m, task_id):
    return m.task(task_id)["status"]


def test_full_task_completes_and_reports_everything(manager, worker_process):
    ids = manager.submit_job(one_task_job(echo("hello there"), sleep(0.2),
                                           exec_cmd("print('from the child'); print('line 2')")))
    task_id = ids["task_ids"][0]
    w = worker_process(manager.url)
    wait_until(lambda: task_status(manager, task_id) == "completed", timeout=30)
    updates = manager.task_updates(task_id)
    assert updates[0]["task_status"] == "active"
    # Updates queued together arrive merged (newest activity wins), so the
    # Manager's final view is what is certain, plus the order of what arrived.
    final = manager.task(task_id)
    assert (final["activity"], final["current_command_idx"], final["command_progress_percentage"],
            final["task_progress_percentage"]) == ("Task completed", 2, 100, 100)
    assert updates[-1]["task_status"] == "completed"
    idx = [u["current_command_idx"] for u in updates if "current_command_idx" in u]
    assert idx == sorted(idx) and idx[-1] == 2
    log = manager.task_log(task_id)
    assert log.index("hello there") < log.index("from the child") < log.index("line 2")
    assert all(line[:4].isdigit() and "Z: " in line for line in log.splitlines() if line), log
    # Credentials were written back, privately, and the secret never logged.
    creds = w.credentials_file.read_text()
    assert stat.S_IMODE(os.stat(w.credentials_file).st_mode) == 0o600
    secret = next(line.split("=", 1)[1].strip() for line in creds.splitlines() if line.startswith("worker_secret"))
    assert len(secret) == 64
    w.send(signal.SIGTERM)
    assert w.wait() == 0
    assert secret not in w.output
    assert ("POST", "/sign-off", 204) in manager.requests_log
    assert manager.workers()[0]["software"].startswith("Flamenco-Worker/")


def test_registration_keeps_the_existing_home_config(manager, worker_process, tmp_path):
    root = tmp_path / "w"
    (root / "home").mkdir(parents=True)
    (root / "home" / ".flamenco-worker.cfg").write_text("# keep me\n[flamenco-worker]\n# and me\nnickname = homey\n")
    w = worker_process(manager.url, root=root)
    w.wait_for_output("credentials stored")
    text = w.credentials_file.read_text()
    assert "# keep me" in text and "# and me" in text and "worker_id = " in text
    assert stat.S_IMODE(os.stat(w.credentials_file).st_mode) == 0o600
    w.send(signal.SIGINT)
    assert w.wait() == 0


def test_sign_on_401_registers_again(manager, worker_process, tmp_path):
    root = tmp_path / "w"
    w = worker_process(manager.url, root=root)
    w.wait_for_output("credentials stored")
    w.send(signal.SIGTERM)
    assert w.wait() == 0
    first_id = manager.workers()[0]["id"]
    manager.forget_worker(first_id)
    w2 = worker_process(manager.url, root=root)
    w2.wait_for_output("signed on")
    assert ("POST", "/sign-on", 401) in manager.requests_log
    assert ("POST", "/sign-on", 204) in manager.requests_log
    new_ids = [wk["id"] for wk in manager.workers()]
    assert first_id not in new_ids and len(new_ids) == 1
    assert new_ids[0] in w2.credentials_file.read_text()


def test_manager_down_at_start_then_up(tmp_path, worker_process):
    from fworker.devmanager import DevManager
    from tests.support.workers import free_port

    port = free_port()
    w = worker_process(f"http://127.0.0.1:{port}/")
    w.wait_for_output("retrying")
    assert w.proc.poll() is None
    m = DevManager(str(tmp_path / "late.sqlite"), port=port)
    m.start()
    try:
        task_id = m.submit_job(one_task_job(echo("late but fine")))["task_ids"][0]
        wait_until(lambda: task_status(m, task_id) == "completed", timeout=30)
    finally:
        w.send(signal.SIGTERM)
        assert w.wait() == 0
        m.stop()


def test_sigterm_during_exec_kills_the_tree_fails_the_task_and_signs_off(manager, worker_process):
    script = ("import subprocess, sys, time\n"
              "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
              "print('pids', c.pid, flush=True)\n"
              "time.sleep(600)\n")
    task_id = manager.submit_job(one_task_job(exec_cmd(script)))["task_ids"][0]
    w = worker_process(manager.url)
    log = wait_until(lambda: "pids" in manager.task_log(task_id) and manager.task_log(task_id), timeout=30)
    grandchild = int(log.split("pids", 1)[1].split()[0])
    tree = [grandchild] + [p.pid for p in psutil.Process(w.proc.pid).children(recursive=True)]
    w.send(signal.SIGTERM)
    assert w.wait() == 0
    wait_until(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in tree),
               timeout=10, what="process tree gone")
    task = manager.task(task_id)
    assert task["status"] == "failed"
    assert "shut down" in manager.task_updates(task_id)[-1]["activity"]
    assert ("POST", "/sign-off", 204) in manager.requests_log


def test_unknown_command_and_bad_settings_fail_the_task_and_the_worker_goes_on(manager, worker_process):
    ids = manager.submit_job(job(task("t0", [{"name": "frobnicate", "settings": {}}]),
                                 task("t1", [echo(42)]), task("t2", [echo("still alive")])))
    bad1, bad2, good = ids["task_ids"]
    worker_process(manager.url)
    wait_until(lambda: task_status(manager, good) == "completed", timeout=30)
    assert task_status(manager, bad1) == "failed"
    assert "unknown command 'frobnicate'" in manager.task(bad1)["activity"]
    assert task_status(manager, bad2) == "failed"
    assert "'echo'" in manager.task(bad2)["activity"] and "'message'" in manager.task(bad2)["activity"]


def test_bad_config_file_is_a_clear_error_without_traceback(tmp_path):
    import subprocess

    cfg = tmp_path / "bad.cfg"
    cfg.write_text("[flamenco-worker]\nhttp_timeout = soon\n")
    out = subprocess.run([sys.executable, "-m", "fworker", "-c", str(cfg)], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path, env=dict(os.environ, HOME=str(tmp_path)))
    assert out.returncode == 2
    assert "http_timeout" in out.stderr and "soon" in out.stderr and str(cfg) in out.stderr
    assert "Traceback" not in out.stderr
