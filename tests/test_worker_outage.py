"""Outages, crashes and misbehaving Managers: nothing is lost, nothing left running."""
import signal

import psutil
import pytest

from tests.support.faults import FaultProxy
from tests.support.jobs import counted, counter, one_task_job
from tests.support.journal import queued
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow  # the real worker process, each test a second or more


def test_updates_made_while_the_manager_is_down_arrive_in_order(manager, worker_process, tmp_path):
    proxy = FaultProxy(manager.url).up()
    stop = tmp_path / "stop"
    try:
        task_id = manager.submit_job(one_task_job(counter(100000, stop)))["task_ids"][0]
        w = worker_process(proxy.url)
        wait_until(lambda: "count 5" in manager.task_log(task_id), timeout=30)
        proxy.down()
        # The render goes on: updates pile up in the worker's SQLite queue.
        wait_until(lambda: queued(w.queue_db) >= 20, timeout=30, what="updates queued during the outage")
        during_outage = queued(w.queue_db)
        proxy.up()
        stop.touch()
        wait_until(lambda: manager.task(task_id)["status"] == "completed", timeout=60)
        lines = counted(manager.task_log(task_id))
        assert lines == list(range(len(lines))) and len(lines) > 20
        wait_until(lambda: queued(w.queue_db) == 0, timeout=10, what="the queue drained")
        print(f"updates queued during the outage: {during_outage}")
    finally:
        proxy.down()


def test_sigkill_then_restart_delivers_the_queue(manager, worker_process, tmp_path):
    proxy = FaultProxy(manager.url).up()
    root = tmp_path / "w"
    try:
        task_id = manager.submit_job(one_task_job(counter(100000, tmp_path / "stop")))["task_ids"][0]
        w = worker_process(proxy.url, root=root)
        wait_until(lambda: "count 3" in manager.task_log(task_id), timeout=30)
        proxy.down()
        wait_until(lambda: queued(w.queue_db) >= 10, timeout=30, what="updates queued")
        (tmp_path / "stop").touch()  # the second run ends at once
        children = psutil.Process(w.proc.pid).children(recursive=True)
        w.proc.kill()
        w.wait()
        # The worker had no chance to stop its render: it dies with the worker
        # all the same (PR_SET_PDEATHSIG), instead of rendering on unsupervised.
        wait_until(lambda: not any(c.is_running() and c.status() != "zombie" for c in children), timeout=10,
                   what="the render to die with the worker")
        left = queued(w.queue_db)
        assert left >= 10
        before = counted(manager.task_log(task_id))
        proxy.up()
        w2 = worker_process(proxy.url, root=root)
        # The queue from before the crash is delivered first, then the Manager
        # hands the still-active task to the worker again; its second run
        # sees the stop file and ends at once.
        wait_until(lambda: manager.task(task_id)["status"] == "completed", timeout=60)
        lines = counted(manager.task_log(task_id))
        assert lines == list(range(len(lines)))
        assert len(lines) > len(before), "the lines queued before the crash were delivered after it"
        w2.send(signal.SIGTERM)
        assert w2.wait() == 0
    finally:
        proxy.down()


def test_5xx_and_garbage_answers_are_retried(manager, worker_process):
    proxy = FaultProxy(manager.url).up()
    try:
        proxy.answer("POST", r"^/task$", 500, b"<html>Internal Server Error</html>", "text/html", times=3)
        proxy.answer("POST", r"/update$", 502, b"Bad Gateway", times=3)
        proxy.answer("POST", r"/update$", 200, b"{not json", "application/json", times=1)
        task_id = manager.submit_job(one_task_job(counter(5)))["task_ids"][0]
        worker_process(proxy.url)
        wait_until(lambda: manager.task(task_id)["status"] == "completed", timeout=30)
        assert counted(manager.task_log(task_id)) == list(range(5))
        statuses = [s for m, p, s in proxy.log if p == "/task"]
        assert statuses[:3] == [500, 500, 500] and 200 in statuses
    finally:
        proxy.down()


def test_malformed_task_json_fails_that_task_and_the_worker_goes_on(manager, worker_process):
    proxy = FaultProxy(manager.url).up()
    try:
        ids = manager.submit_job({"name": "j", "job_type": "debug", "priority": 50, "tasks": [
            {"name": "bad", "task_type": "debug", "commands": [{"name": "echo", "settings": {"message": "x"}}]},
            {"name": "good", "task_type": "debug", "commands": [{"name": "echo", "settings": {"message": "ok"}}],
             "parents": ["bad"]}]})
        bad, good = ids["task_ids"]
        proxy.rewrite("POST", r"^/task$", lambda task: dict(task, commands={"not": "a list"}))
        w = worker_process(proxy.url)
        wait_until(lambda: manager.task(bad)["status"] == "failed", timeout=30)
        assert "'commands' must be a list" in manager.task(bad)["activity"]
        # The Manager re-queues nothing here: the good task needs a completed
        # parent.  The point is that the worker is alive and still asking.
        count = len([1 for _, p, _ in proxy.log if p == "/task"])
        wait_until(lambda: len([1 for _, p, _ in proxy.log if p == "/task"]) > count + 2, timeout=20,
                   what="the worker asking for work again")
        assert w.proc.poll() is None
        assert manager.task(good)["status"] == "queued"
    finally:
        proxy.down()


def test_sigint_during_sleep_fails_the_task_and_a_second_sigint_is_not_needed(manager, worker_process):
    task_id = manager.submit_job({"name": "j", "job_type": "debug", "priority": 50, "tasks": [
        {"name": "nap", "task_type": "debug", "commands": [{"name": "sleep", "settings": {"time_in_seconds": 600}}]}]}
    )["task_ids"][0]
    w = worker_process(manager.url)
    wait_until(lambda: "sleeping 600" in manager.task_log(task_id), timeout=30)
    w.send(signal.SIGINT)
    assert w.wait() == 0
    assert manager.task(task_id)["status"] == "failed"
    assert ("POST", "/sign-off", 204) in manager.requests_log


def test_second_signal_exits_at_once_and_keeps_the_queue(manager, worker_process):
    proxy = FaultProxy(manager.url).up()
    try:
        task_id = manager.submit_job(one_task_job(counter(100000)))["task_ids"][0]
        w = worker_process(proxy.url, settings={"shutdown_flush_timeout": "600"})
        wait_until(lambda: "count 3" in manager.task_log(task_id), timeout=30)
        proxy.down()
        # Something must be waiting in the queue when the worker gives up: an
        # update that could not be sent (one in flight at down() still arrives).
        w.wait_for_output("cannot send task updates")
        children = psutil.Process(w.proc.pid).children(recursive=True)
        w.send(signal.SIGTERM)
        w.wait_for_output("shutdown requested")
        w.send(signal.SIGTERM)
        assert w.wait(timeout=20) == 130
        assert queued(w.queue_db) > 0
        wait_until(lambda: not any(c.is_running() and c.status() != "zombie" for c in children), timeout=10,
                   what="the render killed")
    finally:
        proxy.down()
