"""Status changes: the Manager's requests (423 on /task, may-i-run,
/status-change while asleep), the local signals, and staying in touch while
idle.  The real worker process against the development Manager."""
import signal

import pytest

from fworker.devmanager import DevManager
from tests.support.client import count, requests_after, verdicts, worker_id
from tests.support.jobs import CHATTY, exec_cmd, sleep, submit
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow  # the real worker process, each test a second or more


ACK = "/ack-status-change/"
NAP = sleep(600)


def acked(manager, wid, status):
    return (wid, status) in manager.acks


def ack_entry(status):
    return ("POST", ACK + status, 204)


def assert_idle_asleep_after(manager, entry):
    """After ``entry``, the worker polls /status-change and never asks for work."""
    wait_until(lambda: len(requests_after(manager, entry, "GET", "/status-change")) >= 3)
    assert not requests_after(manager, entry, "POST", "/task")


def test_immediate_sleep_returns_the_task_then_wake_fetches_again(manager, worker_process):
    _, task_id = submit(manager, NAP)
    w = worker_process(manager.url)
    wid = worker_id(manager)
    wait_until(lambda: "sleeping 600" in manager.task_log(task_id), timeout=30)
    manager.request_status(wid, "asleep", lazy=False)
    wait_until(lambda: ("POST", f"/tasks/{task_id}/return", 204) in manager.requests_log)
    assert acked(manager, wid, "asleep")
    assert manager.task(task_id)["status"] == "queued"
    assert verdicts(manager, task_id) == []
    assert_idle_asleep_after(manager, ack_entry("asleep"))
    assert manager.worker(wid)["status"] == "asleep"
    # The ack came before the return: the state changes first, then the task stops.
    log = manager.requests_log
    assert log.index(ack_entry("asleep")) < log.index(("POST", f"/tasks/{task_id}/return", 204))

    manager.request_status(wid, "awake")
    wait_until(lambda: acked(manager, wid, "awake"))
    wait_until(lambda: requests_after(manager, ack_entry("awake"), "POST", "/task"))
    wait_until(lambda: manager.task(task_id)["status"] == "active", timeout=10)
    assert manager.worker(wid)["status"] == "awake"
    w.send(signal.SIGTERM)
    assert w.wait() == 0


def test_lazy_sleep_lets_the_task_finish_first(manager, worker_process, tmp_path):
    stop = tmp_path / "stop"
    script = CHATTY.replace("for i in range(100000):",
                            f"for i in range(100000):\n    if __import__('os').path.exists({str(stop)!r}): break")
    _, task_id = submit(manager, exec_cmd(script))
    w = worker_process(manager.url)
    wid = worker_id(manager)
    wait_until(lambda: "line 3" in manager.task_log(task_id), timeout=30)
    manager.request_status(wid, "asleep", lazy=True)
    polls = count(manager, "GET", f"/may-i-run/{task_id}")
    wait_until(lambda: count(manager, "GET", f"/may-i-run/{task_id}") >= polls + 2)
    assert manager.task(task_id)["status"] == "active", "a lazy request lets the task run"
    assert not acked(manager, wid, "asleep")
    stop.touch()
    wait_until(lambda: acked(manager, wid, "asleep"), timeout=15)
    assert manager.task(task_id)["status"] == "completed"
    assert verdicts(manager, task_id) == ["completed"]
    last_update = max(i for i, r in enumerate(manager.requests_log) if r[1] == f"/tasks/{task_id}/update")
    assert manager.requests_log.index(ack_entry("asleep")) > last_update
    assert_idle_asleep_after(manager, ack_entry("asleep"))
    assert "once the running task is done" in w.output


def test_shutdown_request_returns_the_task_and_exits_cleanly(manager, worker_process):
    _, task_id = submit(manager, NAP)
    w = worker_process(manager.url)
    wid = worker_id(manager)
    wait_until(lambda: "sleeping 600" in manager.task_log(task_id), timeout=30)
    manager.request_status(wid, "shutdown")
    assert w.wait(timeout=20) == 0
    assert ("POST", f"/tasks/{task_id}/return", 204) in manager.requests_log
    assert ("POST", "/sign-off", 204) in manager.requests_log
    assert manager.task(task_id)["status"] == "queued"
    assert verdicts(manager, task_id) == [], "returned, not failed"
    assert not [p for _, p, _ in manager.requests_log if p == ACK + "shutdown"]
    assert "asked for shutdown" in w.output
    assert "Traceback" not in w.output


def test_sigusr1_sleeps_and_sigusr2_wakes(manager, worker_process):
    w = worker_process(manager.url)
    wid = worker_id(manager)
    wait_until(lambda: count(manager, "POST", "/task") >= 2)
    w.send(signal.SIGUSR1)
    wait_until(lambda: acked(manager, wid, "asleep"))
    assert_idle_asleep_after(manager, ack_entry("asleep"))
    w.send(signal.SIGUSR2)
    wait_until(lambda: acked(manager, wid, "awake") and
                     requests_after(manager, ack_entry("asleep"), "POST", ACK + "awake"))
    log = manager.requests_log
    first_asleep = log.index(ack_entry("asleep"))
    awake_after = first_asleep + 1 + log[first_asleep + 1:].index(ack_entry("awake"))
    between = log[first_asleep + 1:awake_after]
    assert ("GET", "/status-change", 204) in between
    assert not [r for r in between if r[1] == "/task"], "no fetch while asleep"
    wait_until(lambda: ("POST", "/task", 204) in manager.requests_log[awake_after:])
    assert manager.worker(wid)["status"] == "awake"


@pytest.mark.parametrize("requested", ["error", "frobnicate"])
def test_error_and_unknown_requests_put_the_worker_to_sleep(manager, worker_process, requested):
    w = worker_process(manager.url)
    wid = worker_id(manager)
    wait_until(lambda: count(manager, "POST", "/task") >= 1)
    manager.request_status(wid, requested)
    wait_until(lambda: acked(manager, wid, "asleep"))
    assert ("POST", "/task", 423) in manager.requests_log
    assert_idle_asleep_after(manager, ack_entry("asleep"))
    # The request stays pending (the worker did not become what was asked),
    # and the worker does not acknowledge 'asleep' again on every poll.
    assert manager.worker(wid)["status_requested"] == requested
    assert manager.acks.count((wid, "asleep")) == 1
    assert not acked(manager, wid, requested)
    assert f"asked for status {requested!r}" in w.output
    manager.request_status(wid, "awake")
    wait_until(lambda: acked(manager, wid, "awake"))
    wait_until(lambda: requests_after(manager, ack_entry("awake"), "POST", "/task"))


def test_an_idle_worker_is_never_timed_out(tmp_path, worker_process):
    # A tiny worker timeout; the worker asks every 0.1 s (with jitter).
    m = DevManager(str(tmp_path / "m.sqlite"), worker_timeout=0.8).start()
    timed_out = []
    check = m.roster.time_out_silent_workers
    m.roster.time_out_silent_workers = lambda timeout: timed_out.extend(check(timeout)) or timed_out
    try:
        worker_process(m.url)
        wait_until(lambda: count(m, "POST", "/task") >= 15, timeout=15)
        assert timed_out == []
        assert m.workers()[0]["status"] == "awake"
    finally:
        m.stop()
