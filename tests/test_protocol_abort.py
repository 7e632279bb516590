"""The Manager takes a running task back: cancel, reassign, forget.  The real
worker process against the development Manager."""
import signal
import time

import psutil
import pytest

from tests.support.client import WorkerClient, count, verdicts
from tests.support.faults import FaultProxy
from tests.support.jobs import CHATTY, TREE, exec_cmd, submit
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow  # the real worker process, each test a second or more


MAY_I_RUN = 0.3
GRACE = 0.5
# Beyond may_i_run_interval + abort_grace_period: an HTTP round trip or two and
# the scan of the process tree, on a loaded 2-core machine.
SLACK = 3.0


def tree_of(worker, log):
    """The worker's descendants plus the grandchild named in the task log."""
    grandchild = int(log.split("pids", 1)[1].split()[0])
    return [psutil.Process(grandchild)] + psutil.Process(worker.proc.pid).children(recursive=True)


def all_gone(procs):
    def alive(p):
        try:
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False
    return not any(alive(p) for p in procs)


def start_tree_task(manager, worker_process, tmp_path, **settings):
    job_id, task_id = submit(manager, exec_cmd(TREE))
    w = worker_process(manager.url, {"may_i_run_interval": str(MAY_I_RUN), "abort_grace_period": str(GRACE),
                                     "task_log_folder": str(tmp_path / "tasklogs"), **settings})
    log = wait_until(lambda: "pids" in manager.task_log(task_id) and manager.task_log(task_id), timeout=30)
    procs = tree_of(w, log)
    assert len(procs) >= 2, "the child and its grandchild run"
    return w, job_id, task_id, procs


def assert_tree_gone_in_time(procs, since):
    """Timing is the behaviour here: the worker notices within may_i_run_interval and
    kills the tree after abort_grace_period; SLACK is the margin for a loaded machine."""
    wait_until(lambda: all_gone(procs), timeout=30, what="the task's process tree gone")
    took = time.monotonic() - since
    assert took <= MAY_I_RUN + GRACE + SLACK, f"the tree was stopped only after {took:.1f} s"


def test_cancelled_job_stops_the_tree_returns_the_task_and_logs_why(manager, worker_process, tmp_path):
    w, job_id, task_id, procs = start_tree_task(manager, worker_process, tmp_path)
    since = time.monotonic()
    manager.cancel_job(job_id)
    assert_tree_gone_in_time(procs, since)
    wait_until(lambda: manager.task(task_id)["status"] == "canceled", timeout=10)
    assert ("POST", f"/tasks/{task_id}/return", 204) in manager.requests_log
    assert verdicts(manager, task_id) == [], "no canceled or failed update: the task was given back"
    reason = f"task {task_id} is cancel-requested, not active"
    wait_until(lambda: reason in manager.task_log(task_id))
    assert reason in w.output
    # The worker goes on asking for work.
    asked = count(manager, "POST", "/task")
    wait_until(lambda: count(manager, "POST", "/task") > asked + 1)
    assert w.proc.poll() is None


def test_reassigned_task_is_stopped_and_given_back(manager, worker_process, tmp_path):
    w, _job_id, task_id, procs = start_tree_task(manager, worker_process, tmp_path)
    other = WorkerClient(manager, nickname="other").join()
    since = time.monotonic()
    manager.reassign_task(task_id, other.id)
    assert_tree_gone_in_time(procs, since)
    wait_until(lambda: ("POST", f"/tasks/{task_id}/return", 204) in manager.requests_log)
    task = manager.task(task_id)
    assert task["status"] == "active" and task["worker"] == other.id, "still the other worker's"
    assert verdicts(manager, task_id) == []
    # The Manager refuses this worker's late log (409), so the reason is in
    # the worker's log and in the task log it keeps locally.
    reason = f"task {task_id} was reassigned to another worker"
    assert reason in w.output
    local_log = tmp_path / "tasklogs" / f"task-{task_id}.txt"
    wait_until(lambda: local_log.exists() and reason in local_log.read_text(), timeout=5, what="the local task log")


@pytest.mark.parametrize("how, status", [("forget", 404), ("reassign", 409)])
def test_refused_update_of_the_running_task_stops_it(manager, worker_process, how, status):
    _job_id, task_id = submit(manager, exec_cmd(CHATTY))
    # may-i-run is far away: this time only the refused updates can stop the task.
    w = worker_process(manager.url, {"may_i_run_interval": "60", "abort_grace_period": str(GRACE)})
    wait_until(lambda: "line 3" in manager.task_log(task_id), timeout=30)
    children = psutil.Process(w.proc.pid).children(recursive=True)
    assert children
    if how == "forget":
        manager.forget_task(task_id)
    else:
        manager.reassign_task(task_id, WorkerClient(manager, nickname="other").join().id)
    update = f"/tasks/{task_id}/update"
    wait_until(lambda: ("POST", update, status) in manager.requests_log)
    wait_until(lambda: all_gone(children), timeout=GRACE + SLACK + 1, what="the exec child gone")
    w.wait_for_output("the Manager refused its updates")
    returned = ("POST", f"/tasks/{task_id}/return", 204 if how == "reassign" else 404)
    wait_until(lambda: returned in manager.requests_log)
    assert not [p for _, p, _ in manager.requests_log if p.startswith("/may-i-run/")]
    if how == "reassign":
        assert verdicts(manager, task_id) == []
    w.send(signal.SIGTERM)
    assert w.wait() == 0


def test_bad_may_i_run_answers_are_retried_and_never_end_the_poller(manager, worker_process, tmp_path):
    proxy = FaultProxy(manager.url).up()
    try:
        # Rules apply in order, each a few times; then the real Manager answers.
        proxy.answer("GET", r"^/may-i-run/", 200, b"{not json", "application/json", times=2)
        proxy.answer("GET", r"^/may-i-run/", 200, {"may_keep_running": "no"}, times=2)
        proxy.answer("GET", r"^/may-i-run/", 404, b"Invalid ObjectID used for task-id: x", times=1)
        proxy.answer("GET", r"^/may-i-run/", 503, b"busy", times=1)
        job_id, task_id = submit(manager, exec_cmd(TREE))
        w = worker_process(proxy.url, {"may_i_run_interval": "0.1", "abort_grace_period": str(GRACE)})
        wait_until(lambda: len([1 for _, p, _ in proxy.log if p.startswith("/may-i-run/")]) >= 7, timeout=30,
                   what="the bad answers and a good one")
        assert manager.task(task_id)["status"] == "active", "a bad answer is no reason to stop"
        assert w.output.count(f"may-i-run for task {task_id}") >= 6
        manager.cancel_job(job_id)
        wait_until(lambda: manager.task(task_id)["status"] == "canceled", timeout=10)
        assert verdicts(manager, task_id) == []
    finally:
        proxy.down()
