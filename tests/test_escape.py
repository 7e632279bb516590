"""Nothing of a task keeps running once it ends: cancelled, done, or stopped by the
worker's shutdown.  The real worker process against the development Manager, with
children that try hard to escape (issue 15, case 4): a double fork into a session of its
own with an empty environment that keeps stdout open, and a background helper that keeps
its environment and lets go of the output."""
import os
import shlex
import signal

import psutil
import pytest

from tests.support.client import verdicts
from tests.support.jobs import submit
from tests.support.procs import background_helper, double_fork, escapees, keep_running, kill_marked, marked, new_marker
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow  # the real worker process, each test a few seconds

SETTINGS = {"may_i_run_interval": "0.3", "abort_grace_period": "0.5"}
# Enough for may-i-run, the grace period, a linger of output and the HTTP round trips
# on a loaded 2-core machine: a deadline to wait against, never a sleep.
DEADLINE = 30


def exec_(args: list[str]) -> dict:
    return {"name": "exec", "settings": {"cmd": shlex.join(args)}}


@pytest.fixture
def marker():
    mark = new_marker("escape")
    try:
        yield mark
    finally:
        kill_marked(mark)


def running_escapee(marker: str, worker_pid: int) -> psutil.Process:
    """The escaped sleeper, once it runs: re-parented to the worker, in a session of its
    own, without the worker's marks in its environment."""
    found = wait_until(lambda: escapees(marker), DEADLINE, what="the escaped sleeper")
    (proc,) = found
    wait_until(lambda: proc.ppid() == worker_pid, DEADLINE, what="the sleeper re-parented to the worker")
    assert os.getsid(proc.pid) != os.getsid(worker_pid)
    assert proc.environ() == {}, "env -i: no token, no owner mark"
    return proc


def nothing_left(marker: str) -> None:
    wait_until(lambda: not marked(marker), DEADLINE,
               what=lambda: f"no process of the task left; still running: {[p.pid for p in marked(marker)]}")


def test_cancel_stops_a_double_fork_that_left_session_environment_and_parent(manager, worker_process, marker):
    job_id, task_id = submit(manager, exec_(double_fork(marker, then=keep_running(marker))))
    w = worker_process(manager.url, SETTINGS)
    running_escapee(marker, w.proc.pid)
    manager.cancel_job(job_id)
    wait_until(lambda: ("POST", f"/tasks/{task_id}/return", 204) in manager.requests_log, DEADLINE)
    nothing_left(marker)
    assert verdicts(manager, task_id) == []
    assert w.proc.poll() is None


def test_a_task_ends_though_an_escaped_process_holds_its_output(manager, worker_process, marker):
    # The child exits at once; the sleeper it left holds stdout open and no scan finds it.
    _job_id, task_id = submit(manager, exec_(double_fork(marker)))
    w = worker_process(manager.url, SETTINGS)
    running_escapee(marker, w.proc.pid)
    wait_until(lambda: manager.task(task_id)["status"] == "completed", DEADLINE,
               what=lambda: f"the task completed (it is {manager.task(task_id)['status']})")
    nothing_left(marker)
    assert "spawned" in manager.task_log(task_id)


def test_a_background_helper_does_not_outlive_its_task(manager, worker_process, marker):
    _job_id, task_id = submit(manager, exec_(background_helper(marker)))
    w = worker_process(manager.url, SETTINGS)
    wait_until(lambda: manager.task(task_id)["status"] == "completed", DEADLINE)
    nothing_left(marker)
    assert "helper started" in manager.task_log(task_id)
    assert w.proc.poll() is None


def test_sigterm_stops_every_process_of_the_running_task(manager, worker_process, marker):
    # The helper of the first command keeps its environment and runs beside the second,
    # which left a double-forked sleeper behind and still runs.
    _job_id, _task_id = submit(manager, exec_(background_helper(marker)),
                             exec_(double_fork(marker, then=keep_running(marker))))
    w = worker_process(manager.url, SETTINGS)
    running_escapee(marker, w.proc.pid)
    wait_until(lambda: escapees(marker, "main"), DEADLINE, what="the second command running")
    assert escapees(marker, "helper"), "the first command's helper runs beside it"
    w.send(signal.SIGTERM)
    assert w.wait(DEADLINE) == 0
    nothing_left(marker)
