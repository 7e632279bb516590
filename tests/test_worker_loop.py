"""The worker's loop driven step by step, in this process: ``start()``, ``run_once()``,
``shutdown()`` against the development Manager over 127.0.0.1 (both run in greenlets
here).  The fast paths; the subprocess tests cover signals, crashes and restarts."""
import gevent

from fworker.runner import Outcome
from fworker.states import State
from tests.support.client import count, worker_id
from tests.support.jobs import echo, sleep, submit
from tests.support.waiting import wait_until


def status_of(manager, task_id):
    return manager.task(task_id)["status"]


def test_start_registers_and_is_awake(manager, make_worker):
    worker = make_worker()
    assert worker.machine.state is State.AWAKE
    wid = worker_id(manager)
    assert worker.upstream.worker_id == wid
    assert manager.worker(wid)["status"] == "awake"
    # manager_protocol = auto: a 2.x Manager has no /api/v3/version.
    assert manager.requests_log == [("GET", "/api/v3/version", 404), ("POST", "/register-worker", 200),
                                    ("POST", "/ack-status-change/awake", 204)]


def test_no_task_is_an_idle_wait_that_a_shutdown_request_ends(manager, make_worker):
    # A long interval: the step must be waiting, not asking again.
    worker = make_worker(fetch_task_interval="15")
    step = gevent.spawn(worker.run_once)
    wait_until(lambda: ("POST", "/task", 204) in manager.requests_log, what="a 204 for the task fetch")
    assert not step.ready(), "after a 204 the step waits"
    assert count(manager, "POST", "/task") == 1
    worker.request_shutdown("test")
    wait_until(step.ready, timeout=5, what="the idle wait ended by the shutdown request")
    assert count(manager, "POST", "/task") == 1
    worker.run_once()  # shutting down: does nothing
    assert count(manager, "POST", "/task") == 1


def test_one_task_runs_and_its_updates_arrive_in_order(manager, make_worker):
    _, task_id = submit(manager, echo("first"), echo("second"), sleep(0.05), echo("third"))
    worker = make_worker()
    worker.run_once()  # fetches the task and runs it to the end
    assert worker.last_outcome is Outcome.COMPLETED
    wait_until(lambda: status_of(manager, task_id) == "completed", what="the task completed at the Manager")
    updates = manager.task_updates(task_id)
    assert updates[0]["task_status"] == "active"
    assert updates[-1]["task_status"] == "completed"
    assert [u["task_status"] for u in updates if "task_status" in u] == ["active", "completed"]
    # The runner counts a step per command; the 2.x edge leaves steps out, and an
    # update holding nothing else is not sent at all.
    assert all(u and "steps_completed" not in u for u in updates), updates
    commands = [u["current_command_idx"] for u in updates if "current_command_idx" in u]
    assert commands == sorted(commands) and commands[-1] == 3
    log = manager.task_log(task_id)
    assert log.index("first") < log.index("second") < log.index("third")


def test_asleep_by_423_then_awake_by_status_change(manager, make_worker):
    worker = make_worker()
    wid = worker_id(manager)
    manager.request_status(wid, "asleep")
    worker.run_once()  # POST /task: 423, asleep requested
    assert ("POST", "/task", 423) in manager.requests_log
    assert worker.machine.state is State.ASLEEP
    assert (wid, "asleep") in manager.acks and manager.worker(wid)["status"] == "asleep"
    asked = count(manager, "POST", "/task")
    worker.run_once()  # asleep: polls for a status change instead of asking for work
    assert ("GET", "/status-change", 204) in manager.requests_log
    manager.request_status(wid, "awake")
    worker.run_once()
    assert worker.machine.state is State.AWAKE
    assert (wid, "awake") in manager.acks and manager.worker(wid)["status"] == "awake"
    assert count(manager, "POST", "/task") == asked, "no work asked for while asleep"
    _, task_id = submit(manager, echo("awake again"))
    worker.run_once()
    assert worker.last_outcome is Outcome.COMPLETED
    wait_until(lambda: status_of(manager, task_id) == "completed", what="the task completed")


def test_may_i_run_no_stops_the_task_and_gives_it_back(manager, make_worker):
    job_id, task_id = submit(manager, sleep(600))
    worker = make_worker(may_i_run_interval="0.1")
    step = gevent.spawn(worker.run_once)
    wait_until(lambda: status_of(manager, task_id) == "active" and manager.task_updates(task_id),
               what="the task running")
    manager.cancel_job(job_id)
    wait_until(lambda: ("GET", f"/may-i-run/{task_id}", 200) in manager.requests_log, what="a may-i-run")
    step.get(timeout=30)
    assert worker.last_outcome is Outcome.RETURNED
    assert ("POST", f"/tasks/{task_id}/return", 204) in manager.requests_log
    assert status_of(manager, task_id) == "canceled"
    assert not [u for u in manager.task_updates(task_id) if u.get("task_status") in ("failed", "canceled")]
    assert worker.machine.state is State.AWAKE, "the worker goes on"


def test_shutdown_signs_off(manager, make_worker):
    worker = make_worker()
    wid = worker_id(manager)
    worker.request_shutdown("test")
    worker.shutdown()
    assert ("POST", "/sign-off", 204) in manager.requests_log
    assert manager.worker(wid)["status"] == "offline"
    assert worker.machine.state is State.SHUTDOWN
    worker.shutdown()  # only the first call does anything
    assert count(manager, "POST", "/sign-off") == 1
