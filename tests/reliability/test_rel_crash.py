"""SIGKILL at any moment: while queueing, in the middle of an HTTP request, while an
outage's updates pile up, while their backlog is being sent.  No committed update is
lost, everything arrives in order after the restart, and nothing of the task keeps
running: the render dies with the worker, what escaped is stopped at the restart."""
import shlex
import signal
import sys
import uuid

import psutil
import pytest

from tests.support import relharness
from tests.support.relharness import Step
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow  # the real worker process, each test a second or more


PY = sys.executable


def assert_clean(result):
    d = result.delivery
    assert not result.problems, "\n".join(result.problems)
    assert not d.problems, "\n".join(d.problems)
    assert d.lost == 0 and d.delivered == d.produced > 20
    assert result.orphans == 0 and result.worker_exit == 0


@pytest.mark.parametrize("protocol", relharness.PROTOCOLS)
def test_sigkill_mid_request_mid_outage_and_mid_backlog(protocol, tmp_path):
    steps = [
        Step(after=6, kind="kill", seconds=0.1),  # while queueing the first updates
        Step(after=14, kind="slow", path=r"/update$"),  # an update the Manager applies, answered late...
        Step(after=15, kind="kill", seconds=0.2),  # ...and the worker killed while it waits for it
        Step(after=22, kind="kill-in-outage", seconds=1.0),
        Step(after=30, kind="kill-after-outage", seconds=1.0),
    ]
    result = relharness.run(101, tmp_path, steps=steps, lines=150, protocol=protocol)
    print(dict(result.faults), result.delivery)
    assert_clean(result)
    assert result.faults["kill"] + result.faults["kill-in-outage"] + result.faults["kill-after-outage"] >= 3


LEFTOVER = "import time, sys; time.sleep(300)"


def test_a_render_helper_that_outlives_a_killed_worker_is_stopped_before_new_work(manager, worker_process,
                                                                                   tmp_path):
    # Unique on the machine: another run of this test (another checkout, a killed run's
    # survivor) must never be taken for this one's helper.
    token = f"leftover-{uuid.uuid4().hex}"
    # sh starts a helper in the background (it does not get the parent-death signal:
    # that is not inherited), then becomes the render itself.
    script = (f"{shlex.join([PY, '-c', LEFTOVER, token])} & "
              f"exec {shlex.join([PY, '-c', 'import time; print(1, flush=True); time.sleep(300)'])}")
    task_id = manager.submit_job({"name": "j", "job_type": "debug", "priority": 50, "tasks": [
        {"name": "t", "task_type": "debug", "commands": [
            {"name": "echo", "settings": {"message": "run starts"}},
            {"name": "exec", "settings": {"cmd": shlex.join(["sh", "-c", script])}}]}]})["task_ids"][0]
    root = tmp_path / "w"
    w = worker_process(manager.url, root=root)
    helper = wait_until(lambda: marked(token), timeout=30, what="the helper started")[0]
    render = [p for p in psutil.Process(w.proc.pid).children(recursive=True) if p.pid != helper.pid]
    w.proc.kill()
    w.wait()
    wait_until(lambda: not any(alive(p) for p in render), timeout=10, what="the render died with the worker")
    assert alive(helper), "the helper escaped: this is what the restart must clean up"
    w2 = worker_process(manager.url, root=root)
    w2.wait_for_output("left running by an earlier task of this worker")
    wait_until(lambda: not alive(helper), timeout=10, what="the helper stopped")
    # The Manager hands the still-active task over again: it runs again from the start.
    wait_until(lambda: manager.task_log(task_id).count("run starts") == 2, timeout=30)
    manager.cancel_task(task_id)
    wait_until(lambda: manager.task(task_id)["status"] == "canceled", timeout=30)
    w2.send(signal.SIGTERM)
    assert w2.wait() == 0
    wait_until(lambda: not marked(token), timeout=10, what="no helper left")


def marked(token):
    found = []
    for proc in psutil.process_iter():
        try:
            if token in proc.cmdline() and alive(proc):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def alive(proc):
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
