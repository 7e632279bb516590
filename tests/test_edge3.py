"""The worker against the Flamenco 3 development Manager (api/v3), in this process over
127.0.0.1: detection, registration and credentials, sign-on and the acknowledged state,
tasks and their updates, steps, what cannot run, status requests, 403/404, shutdown.
Every test ends with the Manager having found every request valid."""
import os
import stat

import gevent
import pytest

from fworker.devmanager.v3 import jobs
from fworker.runner import Outcome
from fworker.states import State
from tests.support.waiting import wait_until


@pytest.fixture
def manager(make_manager3):
    return make_manager3()


def submit(manager, *commands, task_type="misc"):
    done = manager.submit_job(jobs.job("job", [jobs.task("t0", list(commands), task_type)]))
    return done["job_id"], done["task_ids"][0]


def ops(manager):
    return [(r["operation"], r["status"]) for r in manager.requests]


def test_start_detects_v3_registers_signs_on_and_acknowledges_awake(manager, make_worker, tmp_path):
    worker = make_worker()
    assert worker.edge.dialect == "v3" and worker.stats.manager_protocol == "v3"
    assert worker.machine.state is State.AWAKE
    assert ops(manager)[:4] == [("getVersion", 200), ("registerWorker", 200), ("signOn", 200),
                                ("workerStateChanged", 204)]
    wid = worker.upstream.worker_id
    seen = manager.worker(wid)
    assert seen["status"] == "awake"
    assert seen["supported_task_types"] == ["blender", "ffmpeg", "file-management", "misc"]
    assert seen["platform"] == "linux"
    path = tmp_path / "w0" / "credentials-v3.cfg"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert wid in path.read_text()
    assert not (tmp_path / "w0" / "credentials.cfg").exists(), "the 2.x credentials are not touched"
    assert manager.invalid_requests() == []


def test_a_restarted_worker_signs_on_with_its_stored_credentials(manager, make_worker):
    first = make_worker()
    wid = first.upstream.worker_id
    first.request_shutdown("restart")
    first.shutdown()
    root = first.settings.task_update_queue_db.rsplit("/", 1)[0]
    import pathlib

    from tests.support.workers import build_worker as build
    again = build(pathlib.Path(root), manager.url, nickname="in-process")
    again.start()
    try:
        assert again.upstream.worker_id == wid
        assert [op for op, _ in ops(manager)].count("registerWorker") == 1
    finally:
        again.request_shutdown("end")
        again.shutdown()
    assert manager.invalid_requests() == []


def test_a_task_runs_with_ordered_log_steps_and_a_final_status(manager, make_worker):
    _, task_id = submit(manager, jobs.echo("first"), jobs.sleep(0.05), jobs.echo("second"),
                        jobs.exec_command("/bin/echo", ["third"]))
    worker = make_worker()
    worker.run_once()
    assert worker.last_outcome is Outcome.COMPLETED
    wait_until(lambda: manager.task(task_id)["status"] == "completed", what="the task completed")
    updates = manager.task_updates(task_id)
    statuses = [u["taskStatus"] for u in updates if "taskStatus" in u]
    assert statuses == ["active", "completed"]
    log = manager.task_log(task_id)
    assert log.index("first") < log.index("second") < log.index("third")
    assert manager.task(task_id)["steps_completed"] == 4
    assert manager.invalid_requests() == []


@pytest.mark.parametrize("command, task_type, reason", [
    (jobs.command("no-such-command"), "misc", "unknown command 'no-such-command'"),
    (jobs.sleep(-1), "misc", "'duration_in_seconds' must be at least 0"),
])
def test_a_task_it_cannot_run_is_reported_failed_with_the_reason(manager, make_worker, command, task_type, reason):
    _, task_id = submit(manager, command, task_type=task_type)
    worker = make_worker()
    worker.run_once()
    assert worker.last_outcome is Outcome.FAILED
    wait_until(lambda: manager.task(task_id)["status"] == "failed", what="the task failed")
    failed = [u for u in manager.task_updates(task_id) if u.get("taskStatus") == "failed"]
    assert reason in failed[-1]["activity"]
    assert manager.invalid_requests() == []


def test_asleep_by_423_polls_state_then_wakes(manager, make_worker):
    worker = make_worker()
    wid = worker.upstream.worker_id
    manager.request_status(wid, "asleep")
    worker.run_once()
    assert worker.machine.state is State.ASLEEP
    assert manager.worker(wid)["status"] == "asleep"
    worker.run_once()
    assert ("workerState", 204) in ops(manager)
    manager.request_status(wid, "awake")
    worker.run_once()
    assert worker.machine.state is State.AWAKE and manager.worker(wid)["status"] == "awake"
    assert manager.invalid_requests() == []


@pytest.mark.parametrize("requested, settings, code", [("offline", {}, 0),
                                                        ("restart", {"restart_exit_code": "42"}, 42)])
def test_offline_and_restart_sign_off_and_exit(manager, make_worker, requested, settings, code):
    worker = make_worker(**settings)
    wid = worker.upstream.worker_id
    sign_on = next(r for r in manager.requests if r["operation"] == "signOn")
    manager.request_status(wid, requested)
    worker.run_once()
    assert worker.shutdown_reason is not None
    worker.shutdown()
    assert worker.edge.exit_code == code
    assert ops(manager)[-1] == ("signOff", 204)
    assert sign_on is not None
    assert manager.invalid_requests() == []


def test_a_forgotten_worker_signs_on_again_and_registers_only_then(manager, make_worker):
    worker = make_worker()
    old = worker.upstream.worker_id
    manager.forget_worker(old)
    worker.run_once()  # 403 on the task request
    worker.run_once()
    new = worker.upstream.worker_id
    assert new != old
    names = [op for op, _ in ops(manager)]
    assert names.count("registerWorker") == 2
    assert manager.worker(new)["status"] == "awake"
    assert manager.invalid_requests() == []


def test_sigterm_stops_the_task_without_failing_it_and_signs_off(manager, make_worker):
    _, task_id = submit(manager, jobs.sleep(600))
    worker = make_worker()
    step = gevent.spawn(worker.run_once)
    wait_until(lambda: manager.task(task_id)["status"] == "active" and manager.task_updates(task_id),
               what="the task running")
    worker._on_signal(15)
    step.get(timeout=30)
    worker.shutdown()
    assert worker.last_outcome is Outcome.RETURNED
    assert not [u for u in manager.task_updates(task_id) if u.get("taskStatus") == "failed"]
    assert ops(manager)[-1] == ("signOff", 204)
    assert manager.task(task_id)["status"] != "active", "the sign-off re-queued it"
    assert manager.invalid_requests() == []


def test_a_deleted_job_stops_the_task_and_drops_its_updates(manager, make_worker):
    job_id, task_id = submit(manager, jobs.sleep(600))
    worker = make_worker(may_i_run_interval="30")
    step = gevent.spawn(worker.run_once)
    wait_until(lambda: manager.task_updates(task_id), what="the task running")
    manager.delete_job(job_id)
    step.get(timeout=30)
    assert worker.last_outcome is Outcome.RETURNED
    wait_until(lambda: len(worker.queue) == 0, what="its updates dropped")
    assert manager.invalid_requests() == []


def test_may_i_run_no_stops_the_task_silently(manager, make_worker):
    job_id, task_id = submit(manager, jobs.sleep(600))
    worker = make_worker()
    step = gevent.spawn(worker.run_once)
    wait_until(lambda: manager.task_updates(task_id), what="the task running")
    manager.cancel_job(job_id)
    step.get(timeout=30)
    assert worker.last_outcome is Outcome.RETURNED
    assert ("mayWorkerRun", 200) in ops(manager)
    assert not [u for u in manager.task_updates(task_id) if u.get("taskStatus") in ("failed", "completed")]
    assert manager.invalid_requests() == []


def test_503_is_retried_after_the_managers_retry_after(manager, make_worker):
    worker = make_worker()
    _, task_id = submit(manager, jobs.echo("busy"))
    manager.inject_busy(count=1, path=f"/api/v3/worker/task/{task_id}", retry_after=1)
    worker.run_once()
    wait_until(lambda: manager.task(task_id)["status"] == "completed", what="the task completed")
    assert manager.invalid_requests() == []


def test_a_task_of_a_type_it_did_not_announce_fails_naming_it(tmp_path):
    # A Manager hands out only announced types; one whose list changed may not.
    from fworker import config
    from fworker.queue import UpdateQueue
    from fworker.runner import TaskRunner
    from fworker.task import CommandSpec, Task
    task = Task("0b9c3bde-0000-4000-8000-000000000001", "t", "j", "other", (CommandSpec("echo", {"message": "x"}),),
                {}, 1)
    queue = UpdateQueue(str(tmp_path / "q.sqlite"), dialect="v3")
    runner = TaskRunner(task, queue, config.load(files=[]), dialect="v3", announced=["misc"])
    assert runner.run() is Outcome.FAILED
    final = queue.head(100)[-1].payload
    assert final["task_status"] == "failed"
    assert "task type 'other' is not one this worker announced (misc)" in final["activity"]
    queue.close()
