"""Watchdogs: task_timeout, command_output_timeout, task_log_max_bytes.  Each fails
the task with an activity naming the limit, and nothing of the task keeps running."""
import fworker

# isort: split

import time

import gevent
import psutil
import pytest

import fworker.commands  # noqa: F401  (registers the built-in commands)
from fworker import config
from fworker.process import ChildProcess, OutputTimeout
from fworker.queue import UpdateQueue
from fworker.runner import Outcome, TaskRunner
from fworker.task import parse_task
from tests.support.jobs import PY, exec_cmd, job, task
from tests.support.waiting import wait_until

TASK_ID = "0123456789abcdef01234567"

# Prints a line, then nothing for a long time (a hung Blender).
HANG = "import time; print('loaded', flush=True); time.sleep(300)"
# Prints a line every 0.05 s for 1.5 s: never silent for long.
TICK = "import time\nfor i in range(30):\n    print('tick', i, flush=True)\n    time.sleep(0.05)\n"
# Prints a lot of long lines, fast.
FLOOD = "import sys\nfor i in range(200000):\n    sys.stdout.write('flood %d %s\\n' % (i, 'x' * 200))\n"


def run_task(tmp_path, commands, **settings):
    s = config.load(files=[]).replace(task_update_queue_db=str(tmp_path / "q.sqlite"), push_log_max_interval=0.05,
                                      push_act_max_interval=0.05, abort_grace_period=1.0, **settings)
    queue = UpdateQueue(s.task_update_queue_db)
    task = parse_task({"_id": TASK_ID, "name": "t", "job": "", "task_type": "debug", "commands": commands})
    runner = TaskRunner(task, queue, s)
    started = time.monotonic()
    outcome = gevent.spawn(runner.run).get(timeout=60)
    return outcome, time.monotonic() - started, [u.payload for u in queue.head(100000)]


def descendants():
    return [p for p in psutil.Process().children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE]


def final(updates):
    return [u for u in updates if "task_status" in u][-1]


@pytest.mark.slow
def test_task_timeout_fails_the_task_naming_the_limit_and_stops_its_processes(tmp_path):
    outcome, took, updates = run_task(tmp_path, [exec_cmd(HANG)], task_timeout=1.0)
    assert outcome is Outcome.FAILED
    assert final(updates) == {"task_status": "failed", "activity": "task_timeout: the task ran longer than 1 s"}
    # Timing is the behaviour: not before the limit, and long before the child's 300 s
    # (10 s: a wide margin for a loaded machine).
    assert 1.0 <= took < 10
    wait_until(lambda: not descendants(), timeout=10, what="the hung child gone")


def test_task_timeout_off_by_default_and_a_task_within_it_completes(tmp_path):
    assert config.load(files=[]).task_timeout == 0
    outcome, _, updates = run_task(tmp_path, [{"name": "sleep", "settings": {"time_in_seconds": 0.2}}],
                                   task_timeout=5.0)
    assert outcome is Outcome.COMPLETED and final(updates)["task_status"] == "completed"


def test_command_output_timeout_stops_a_silent_child(tmp_path):
    outcome, took, updates = run_task(tmp_path, [exec_cmd(HANG)], command_output_timeout=0.5)
    assert outcome is Outcome.FAILED
    activity = final(updates)["activity"]
    assert activity.startswith("command_output_timeout: python") and "printed nothing for 0.5 s" in activity
    assert took < 10  # timing is the behaviour: stopped long before the child's 300 s (wide margin)
    log = "\n".join(u["log"] for u in updates if "log" in u)
    assert "loaded" in log and "task failed: command_output_timeout" in log
    wait_until(lambda: not descendants(), timeout=10, what="the silent child gone")


@pytest.mark.slow
def test_command_output_timeout_is_about_silence_not_total_time(tmp_path):
    outcome, _, updates = run_task(tmp_path, [exec_cmd(TICK)], command_output_timeout=0.5)
    assert outcome is Outcome.COMPLETED, final(updates)
    # Every tick arrived: it ran well past the limit (30 ticks 50 ms apart), never silent for that long.
    log = "\n".join(u["log"] for u in updates if "log" in u)
    assert [line.rsplit(" ", 1)[1] for line in log.splitlines() if ": tick " in line] == [str(i) for i in range(30)]


def test_child_process_output_timeout_raises_after_stopping_the_tree():
    lines = []
    child = ChildProcess([PY, "-c", HANG], on_lines=lines.extend, output_timeout=0.3, grace=1.0)
    with pytest.raises(OutputTimeout, match=r"printed nothing for 0\.3 s"):
        child.run()
    assert lines == ["loaded"]
    assert not child.descendants()


def test_task_log_max_bytes_truncates_with_a_marker_and_fails_the_task(tmp_path):
    cap = 100_000
    outcome, _, updates = run_task(tmp_path, [exec_cmd(FLOOD)], task_log_max_bytes=cap)
    assert outcome is Outcome.FAILED
    assert final(updates)["activity"] == f"task_log_max_bytes: the task log passed {cap} bytes"
    log = "\n".join(u["log"] for u in updates if "log" in u)
    assert f"worker: task_log_max_bytes: the task log passed {cap} bytes; the rest of it is dropped" in log
    assert "task failed: task_log_max_bytes" in log
    # The child's lines stop at the cap; the worker's own few lines come on top.
    child_bytes = sum(len(line) + 1 for line in log.splitlines() if ": flood " in line)
    assert cap - 300 < child_bytes - 29 * log.count(": flood ") <= cap
    assert len(log.encode()) < cap * 2
    wait_until(lambda: not descendants(), timeout=10, what="the flooding child gone")


def test_activity_is_one_short_line_even_from_a_huge_setting(tmp_path):
    huge = ["x" * 1000] * 5000  # 5 MB of list where a string belongs
    outcome, _, updates = run_task(tmp_path, [{"name": "echo", "settings": {"message": huge}}])
    assert outcome is Outcome.FAILED
    activity = final(updates)["activity"]
    assert activity.startswith("commands[0]: command 'echo': setting 'message' must be a string")
    assert len(activity) <= 1000 and "\n" not in activity


@pytest.mark.slow
def test_watchdogs_end_to_end(manager, worker_process):
    """Three tasks, three limits, one real worker; it stays up and ends clean."""
    ids = manager.submit_job(job(*(task(name, [exec_cmd(code)])
                                   for name, code in (("hang", HANG), ("flood", FLOOD), ("ok", "print('fine')"))),
                                 name="limits"))["task_ids"]
    w = worker_process(manager.url, settings={"command_output_timeout": "0.5", "task_log_max_bytes": "50000",
                                              "task_timeout": "30"})
    wait_until(lambda: [manager.task(t)["status"] for t in ids] == ["failed", "failed", "completed"],
                     timeout=60)
    assert manager.task(ids[0])["activity"].startswith("command_output_timeout: python printed nothing")
    assert manager.task(ids[1])["activity"] == "task_log_max_bytes: the task log passed 50000 bytes"
    assert len(manager.task_log(ids[1])) < 100_000
    wait_until(lambda: not psutil.Process(w.proc.pid).children(recursive=True), timeout=10,
               what="no task process left")
    assert w.proc.poll() is None
