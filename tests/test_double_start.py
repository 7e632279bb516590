"""Two processes of one worker (issue 15, case 2): the second is refused, the
first's render goes on, a SIGKILLed worker leaves no stale lock, and waiting
for the queue to drain never spins."""
import os
import signal
import sqlite3

import gevent
import psutil
import pytest

import fworker
from fworker.errors import AlreadyRunning
from fworker.flusher import Flusher
from fworker.queue import UpdateQueue
from fworker.upstream import Backoff, Upstream
from tests.support.jobs import exec_cmd, submit
from tests.support.waiting import wait_until
from tests.support.workers import build_worker

TASK_ID = "5a0f0000000000000000000a"
UNREACHABLE = "http://127.0.0.1:9/"  # the discard port: nothing listens, connecting fails at once


# Writes its PID, then runs until the file ``release`` appears in the folder given.
HELD = ("import os, pathlib, sys, time\n"
        "folder = pathlib.Path(sys.argv[1])\n"
        "(folder / 'pid').write_text(str(os.getpid()))\n"
        "deadline = time.monotonic() + 120\n"
        "while not (folder / 'release').exists() and time.monotonic() < deadline:\n"
        "    time.sleep(0.02)\n"
        "print('released')\n")


def start_holding(manager, worker_process, tmp_path):
    """A worker running the held task, and the PID of that task's child."""
    signals = tmp_path / "signals"
    signals.mkdir()
    _job_id, task_id = submit(manager, exec_cmd(HELD, str(signals)))
    root = tmp_path / "w"
    first = worker_process(manager.url, root=root)
    wait_until(lambda: (signals / "pid").exists() and (signals / "pid").read_text(), 30, what="the task's child")
    return first, root, task_id, signals, int((signals / "pid").read_text())


@pytest.mark.slow
def test_a_second_process_is_refused_and_the_first_task_is_unharmed(manager, worker_process, tmp_path):
    first, root, task_id, signals, child = start_holding(manager, worker_process, tmp_path)
    lock_file = f"{first.queue_db}.lock"

    second = worker_process(manager.url, root=root)  # the same configuration, HOME and queue
    assert second.wait(timeout=30) == AlreadyRunning.exit_code == 6
    assert f"process {first.proc.pid} holds the lock file {lock_file}" in second.output, second.output

    assert psutil.pid_exists(child) and psutil.Process(child).status() != psutil.STATUS_ZOMBIE
    assert manager.task(task_id)["status"] == "active"
    assert len(manager.workers()) == 1, "the second process never registered nor signed on as a worker"
    (signals / "release").touch()
    wait_until(lambda: manager.task(task_id)["status"] == "completed", 30, what="the task completed")
    assert "left running by an earlier task" not in first.output + second.output
    first.send(signal.SIGTERM)
    assert first.wait() == 0


@pytest.mark.slow
def test_the_lock_goes_with_a_sigkilled_worker(manager, worker_process, tmp_path):
    first, root, task_id, signals, _child = start_holding(manager, worker_process, tmp_path)
    first.send(signal.SIGKILL)
    first.wait()
    (signals / "release").touch()  # the task runs again, handed back to the same worker id

    again = worker_process(manager.url, root=root)
    wait_until(lambda: manager.task(task_id)["status"] == "completed", 30, what="the task completed")
    assert again.proc.poll() is None and "holds the lock file" not in again.output
    again.send(signal.SIGTERM)
    assert again.wait() == 0


def test_two_queues_on_one_file_in_one_process_are_refused_until_the_first_closes(tmp_path):
    path = str(tmp_path / "q.sqlite")
    first = UpdateQueue(path)
    try:
        UpdateQueue(path)
    except AlreadyRunning as ex:
        assert ex.lock_path == path + ".lock" and ex.holder_pid == os.getpid()
    else:
        raise AssertionError("a second queue on the same file was opened")
    first.close()
    UpdateQueue(path).close()


def test_a_count_of_rows_deleted_elsewhere_is_corrected_when_the_flusher_finds_none(tmp_path):
    path = str(tmp_path / "q.sqlite")
    queue = UpdateQueue(path)
    queue.push_many([(TASK_ID, {"log": f"line {i}"}) for i in range(3)])
    # What another process on the same file did before the lock existed: sent them and deleted them.
    with sqlite3.connect(path) as other:
        other.execute("DELETE FROM task_updates")
    flusher = Flusher(queue, Upstream(UNREACHABLE, timeout=1), backoff=Backoff(1, 1), on_task_lost=print)
    assert not flusher.run_once()
    assert len(queue) == 0, "the worker would wait forever for updates that are gone"
    queue.close()


def counting_len(monkeypatch, limit=10_000):
    """Count how often the queue's length is asked for, and stop a loop that
    asks without end (the old wait never yielded, so it would hang the test)."""
    real = UpdateQueue.__len__
    calls = []

    def counted(queue):
        calls.append(1)
        if len(calls) > limit:
            raise AssertionError(f"len(queue) asked {len(calls)} times: a busy loop")
        return real(queue)

    monkeypatch.setattr(UpdateQueue, "__len__", counted)
    return calls


def test_wait_for_flush_waits_instead_of_spinning(tmp_path, monkeypatch):
    worker = build_worker(tmp_path, UNREACHABLE, backoff_initial=30, backoff_max=30)
    flusher = gevent.spawn(worker.flusher.run)
    try:
        wait_until(worker.flusher.idle.is_set, 10, what="the flusher to find the queue empty")
        calls = counting_len(monkeypatch)
        # Queued while the flusher is idle: its event is still set when the
        # wait starts, and it can only clear it if the wait lets it run.
        worker.queue.push(TASK_ID, {"log": "one line"})
        timeout = 0.5
        assert not worker.wait_for_flush(timeout), "nothing can be delivered to an unreachable Manager"
        # Each turn of the wait sleeps (up to a tenth of a second) or waits on
        # the flusher; a few more for the turns cut short by the deadline.
        assert len(calls) <= timeout / 0.1 + 5, len(calls)
        assert worker.flusher.retries >= 1, "the flusher ran during the wait"
    finally:
        flusher.kill()
        worker.queue.close()


def test_an_embedded_worker_holds_the_lock_until_it_has_shut_down(manager, tmp_path):
    settings = fworker.load_settings(manager_url=manager.url, task_update_queue_db=str(tmp_path / "q.sqlite"),
                                     fetch_task_interval=0.1, task_types="debug")
    handle = fworker.start_worker(settings)
    try:
        fworker.start_worker(settings)
    except AlreadyRunning as ex:
        assert ex.holder_pid == os.getpid()
    else:
        raise AssertionError("a second worker on the same queue was started")
    finally:
        assert handle.stop(timeout=30)
    again = fworker.start_worker(settings)
    assert again.stop(timeout=30) and again.wait(0) == 0
