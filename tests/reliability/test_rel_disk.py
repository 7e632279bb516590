"""A full or failing disk under the queue, and the free-space guard before taking work.

The disk fills up for real: a small tmpfs (mounted by the ``tiny_fs`` fixture) and a
filler file taking its last byte.  SQLite then fails with "database or disk is full"."""
import fworker  # noqa: F401  (monkey-patches first)

# isort: split

import logging
import signal
import sqlite3

import pytest

from fworker import config, pretask
from fworker.errors import Fatal
from fworker.queue import UpdateQueue
from tests.support.jobs import counted, counter, one_task_job
from tests.support.waiting import wait_until
from tests.support.workers import WorkerProcess

T1, T2 = "a" * 24, "b" * 24


def disk_rows(queue):
    with sqlite3.connect(queue.path) as db:
        return [row[0] for row in db.execute("SELECT payload FROM task_updates ORDER BY id")]


def test_a_full_disk_keeps_updates_in_memory_and_writes_them_in_order_later(tiny_fs, caplog):
    fs = tiny_fs(512)
    q = UpdateQueue(str(fs.path / "q.sqlite"))
    q.push(T1, {"log": "before"})
    fs.fill()
    caplog.set_level(logging.WARNING, logger="fworker.queue")
    for i in range(50):
        q.push(T1, {"log": f"line {i} " + "y" * 2000})  # no exception: the render goes on
    assert q.write_error and "full" in q.write_error
    assert len(q) == 51 and len(q.memory) == 50
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "cannot write to the update queue" in errors[0].getMessage()
    # Sent from memory meanwhile, in order, after what is on disk:
    assert [u.payload["log"][:7] for u in q.head(3)] == ["before", "line 0 ", "line 1 "]
    assert not q.write_pending()
    fs.free()
    assert q.write_pending()
    assert len(q.memory) == 0 and len(q) == 51 and q.write_error is None
    assert len(disk_rows(q)) == 51
    logs = [u.payload["log"] for u in q.head(100)]
    assert logs[0] == "before" and [text.split(" ")[1] for text in logs[1:]] == [str(i) for i in range(50)]
    assert "can be written again" in caplog.text


def test_updates_sent_from_memory_are_forgotten_and_nothing_is_sent_twice(tiny_fs):
    fs = tiny_fs(512)
    q = UpdateQueue(str(fs.path / "q.sqlite"))
    q.push(T1, {"log": "on disk"})
    fs.fill()
    q.push(T1, {"log": "in memory"})
    head = q.head(10)
    assert [u.id > 0 for u in head] == [True, False]
    q.delete([u.id for u in head])  # delivered: the disk row cannot even be deleted now
    assert len(q) == 0 and q.head(10) == []
    fs.free()
    assert q.write_pending()
    assert disk_rows(q) == [] and len(q) == 0


def test_at_the_memory_bound_log_lines_are_dropped_with_a_note_and_statuses_kept(tiny_fs):
    fs = tiny_fs(512)
    q = UpdateQueue(str(fs.path / "q.sqlite"), memory_limit=20_000)
    fs.fill()
    q.push(T1, {"task_status": "active"})
    for i in range(100):
        q.push(T1, {"log": f"line {i} " + "z" * 1000})
        q.push(T1, {"activity": f"step {i}", "task_progress_percentage": i})
    q.push(T1, {"task_status": "completed", "activity": "Task completed"})
    q.push(T2, {"task_status": "active"})
    assert q.memory.dropped_lines > 50
    fs.free()
    assert q.write_pending()
    payloads = [u.payload for u in q.head(1000)]
    statuses = [p["task_status"] for p in payloads if "task_status" in p]
    assert statuses == ["active", "completed", "active"]
    notes = [p["log"] for p in payloads if "dropped here" in p.get("log", "")]
    assert len(notes) == 1 and f"{q.memory.dropped_lines} log line(s)" in notes[0]
    kept = [int(p["log"].split(" ")[1]) for p in payloads if p.get("log", "").startswith("line ")]
    assert kept == list(range(len(kept))) and len(kept) + q.memory.dropped_lines == 100
    # The newest activity before the final status survived the merging.
    assert [p for p in payloads if p.get("activity") == "step 99"]
    assert sum(len(str(p)) for p in payloads) < 40_000


def test_a_queue_that_cannot_be_opened_is_a_clear_fatal_error(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "q.sqlite").mkdir()  # a folder where the file should be
    with pytest.raises(Fatal, match=r"cannot open the update queue .*q\.sqlite"):
        UpdateQueue(str(folder / "q.sqlite"))


def test_min_free_disk_mb_is_a_pre_task_problem(tiny_fs, tmp_path):
    fs = tiny_fs(2048)
    writable = tmp_path / "renders"
    writable.mkdir()
    checks = tmp_path / "checks.cfg"
    checks.write_text(f"[pre_task_check]\nwrite.renders = {writable}\n")
    s = config.load(files=[str(checks)]).replace(task_update_queue_db=str(fs.path / "q.sqlite"), min_free_disk_mb=1)
    assert pretask.check(s) == []
    fs.fill()
    problems = pretask.check(s)
    assert len(problems) == 1
    assert f"MB free on the file system of {fs.path}" in problems[0] and "min_free_disk_mb = 1" in problems[0]
    assert pretask.check(s.replace(min_free_disk_mb=0)) == []
    fs.free()
    assert pretask.check(s) == []


def counting_on(fs, stop, manager, worker_process, url):
    """A counting task, and a worker whose queue is on ``fs``, once the count has begun."""
    task_id = manager.submit_job(one_task_job(counter(100000, stop, pad=300)))["task_ids"][0]
    w = worker_process(url, settings={"task_update_queue_db": str(fs.path / "q.sqlite"), "min_free_disk_mb": "0"})
    wait_until(lambda: "count 5 " in manager.task_log(task_id), timeout=30)
    return task_id, w


@pytest.mark.slow
def test_worker_renders_on_through_a_full_queue_disk_and_loses_nothing(manager, worker_process, tiny_fs, tmp_path):
    fs = tiny_fs(1024)
    stop = tmp_path / "stop"
    task_id, w = counting_on(fs, stop, manager, worker_process, manager.url)
    fs.fill()
    w.wait_for_output("cannot write to the update queue")
    # Still rendering, still delivering (from memory).
    seen = len(counted(manager.task_log(task_id)))
    wait_until(lambda: len(counted(manager.task_log(task_id))) > seen + 50, timeout=30)
    fs.free()
    w.wait_for_output("can be written again")
    stop.touch()
    wait_until(lambda: manager.task(task_id)["status"] == "completed", timeout=30)
    lines = counted(manager.task_log(task_id))
    assert lines == list(range(len(lines))) and len(lines) > 60
    assert w.proc.poll() is None
    w.send(signal.SIGTERM)
    assert w.wait() == 0


@pytest.mark.slow
def test_worker_with_a_full_disk_and_no_manager_delivers_everything_later(manager, worker_process, tiny_fs,
                                                                         tmp_path):
    from tests.support.faults import FaultProxy

    fs = tiny_fs(1024)
    proxy = FaultProxy(manager.url).up()
    stop = tmp_path / "stop"
    try:
        task_id, w = counting_on(fs, stop, manager, worker_process, proxy.url)
        proxy.down()
        w.wait_for_output("cannot send task updates")
        fs.fill()
        w.wait_for_output("cannot write to the update queue")
        stop.touch()  # the task ends while nothing can be written nor sent
        w.wait_for_output(f"task {task_id}: completed")
        fs.free()
        # Nothing can be sent from memory meanwhile: the flusher writes it all to disk.
        w.wait_for_output("can be written again")
        proxy.up()
        wait_until(lambda: manager.task(task_id)["status"] == "completed", timeout=30)
        lines = counted(manager.task_log(task_id))
        assert lines == list(range(len(lines))) and len(lines) > 5
        assert w.proc.poll() is None
    finally:
        proxy.down()


@pytest.mark.slow
def test_worker_refuses_work_while_disk_space_is_short_then_takes_it(manager, tiny_fs, tmp_path):
    fs = tiny_fs(2048)
    fs.fill()
    task_id = manager.submit_job({"name": "j", "job_type": "debug", "priority": 50, "tasks": [
        {"name": "t", "task_type": "debug", "commands": [{"name": "echo", "settings": {"message": "hi"}}]}]}
    )["task_ids"][0]
    root = tmp_path / "w"
    root.mkdir()
    w = WorkerProcess(root, manager.url, {"min_free_disk_mb": "1", "pre_task_check_interval": "0.2"})
    # The renders folder is on the full file system: listed in [pre_task_check].
    with open(w.config, "a") as f:
        f.write(f"[pre_task_check]\nwrite.renders = {fs.path}\n")
    w.start()
    try:
        check_error_then_work(manager, w, fs, task_id)
    finally:
        w.stop()


def check_error_then_work(manager, w, fs, task_id):
    w.wait_for_output(f"MB free on the file system of {fs.path} (min_free_disk_mb = 1)")
    wait_until(lambda: manager.workers()[-1]["status"] == "error", timeout=20)
    assert manager.task(task_id)["status"] == "queued"
    fs.free()
    wait_until(lambda: manager.task(task_id)["status"] == "completed", timeout=30)
    assert w.proc.poll() is None


@pytest.mark.slow
def test_a_queue_that_cannot_even_be_created_exits_with_a_clear_message(manager, worker_process, tiny_fs):
    fs = tiny_fs(512)
    fs.fill()
    w = worker_process(manager.url, settings={"task_update_queue_db": str(fs.path / "q.sqlite")})
    assert w.wait(timeout=30) == 1
    assert f"cannot open the update queue {fs.path / 'q.sqlite'}" in w.output and "disk is full" in w.output
    assert "Traceback" not in w.output
