"""fworker.reporter: log lines are stamped with the time they came; the Reporter
protocol declares what a command's context calls, log lines travelling as batches."""
import calendar
import inspect
import logging
import os
import sys
import time

import pytest

from fworker import config
from fworker.commands import base
from fworker.queue import UpdateQueue
from fworker.reporter import LimitExceeded, TaskReporter
from tests.support.client import iso_seconds

TASK = "a" * 24
AT = calendar.timegm((2026, 1, 2, 3, 4, 5)) + 0.25  # 2026-01-02T03:04:05.25Z


def settings(**overrides):
    return config.load(files=[]).replace(**overrides)


def logs(queue):
    return [item.payload["log"] for item in queue.head()]


def test_lines_carry_the_time_they_came_not_the_time_they_are_logged(tmp_path):
    queue = UpdateQueue(str(tmp_path / "q.sqlite"))
    reporter = TaskReporter(TASK, queue, settings())
    reporter.log_lines(["one", "two"], AT)
    reporter.log_lines(["three"], AT + 1)
    reporter.flush_log()
    assert logs(queue) == [("2026-01-02T03:04:05.250000Z: one\n2026-01-02T03:04:05.250000Z: two\n"
                            "2026-01-02T03:04:06.250000Z: three")]


def test_every_line_its_own_update_keeps_the_time_too(tmp_path):
    queue = UpdateQueue(str(tmp_path / "q.sqlite"))
    reporter = TaskReporter(TASK, queue, settings(push_log_max_interval=0))
    reporter.log_lines(["one", "two"], AT)
    assert logs(queue) == ["2026-01-02T03:04:05.250000Z: one", "2026-01-02T03:04:05.250000Z: two"]


def test_lines_logged_one_at_a_time_are_stamped_and_counted_as_in_a_batch(tmp_path):
    # A parsed command (Blender) logs a read's lines one by one, sharing one time:
    # the stamp of that time is kept, and must never stick to another time.
    queue = UpdateQueue(str(tmp_path / "q.sqlite"))
    reporter = TaskReporter(TASK, queue, settings())
    for line, at in [("one", AT), ("two", AT), ("three", AT + 1), ("four", AT), ("five", None)]:
        reporter.log_lines([line], at)
    assert reporter.log_bytes == len("one two three four five") + 1
    reporter.flush_log()
    stamped = logs(queue)[0].split("\n")
    assert stamped[:4] == ["2026-01-02T03:04:05.250000Z: one", "2026-01-02T03:04:05.250000Z: two",
                           "2026-01-02T03:04:06.250000Z: three", "2026-01-02T03:04:05.250000Z: four"]
    assert iso_seconds(stamped[4].split(": ")[0]) > AT + 1000  # now, not the last time given


def test_without_a_time_lines_are_stamped_now(tmp_path):
    queue = UpdateQueue(str(tmp_path / "q.sqlite"))
    reporter = TaskReporter(TASK, queue, settings())
    before = time.time()
    reporter.log_lines(["now"])
    reporter.flush_log()
    after = time.time()
    seconds = iso_seconds(logs(queue)[0].split(": ")[0])
    assert before - 1e-6 <= seconds <= after + 1e-6


def test_a_child_s_lines_reach_the_reporter_with_their_read_time(recorder):
    ctx = base.CommandContext(recorder, logging.getLogger("test.reporter"))
    before = time.time()
    ctx.run_process([sys.executable, "-c", "print('one'); print('two')"])
    after = time.time()
    assert recorder.log == ["one", "two"]
    assert all(at is not None and before <= at <= after for at in recorder.log_times)


# --- the Reporter protocol: what a command's context calls, and nothing else -------

DECLARED = {name for name in vars(base.Reporter) if not name.startswith("_")}


class StrictReporter:
    """Answers exactly the methods ``base.Reporter`` declares; anything else the
    context asks for fails the test."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        if name not in DECLARED:
            raise AttributeError(f"CommandContext used {name!r}, which base.Reporter does not declare")
        return lambda *args: self.calls.append((name, args))


def test_the_protocol_declares_one_batch_method_for_log_lines():
    assert {"log_lines", "activity", "command_progress", "output_produced", "timing",
                        "steps_completed"} == DECLARED


def test_the_task_reporter_has_every_declared_method_with_its_signature(tmp_path):
    reporter = TaskReporter(TASK, UpdateQueue(str(tmp_path / "q.sqlite")), settings())
    assert isinstance(reporter, base.Reporter)
    for name in DECLARED:
        declared = inspect.signature(getattr(base.Reporter, name))
        assert inspect.signature(getattr(TaskReporter, name)) == declared, name


def test_every_service_of_the_context_uses_only_declared_methods():
    reporter = StrictReporter()
    ctx = base.CommandContext(reporter, logging.getLogger("test.reporter"))
    ctx.log("one", AT)
    ctx.log_lines(["two", "three"], AT)
    ctx.activity("busy")
    ctx.progress(150)
    ctx.output_produced("out.png")
    ctx.timing("rendering", 1.5)
    ctx.step_completed()
    ctx.step_completed(0)  # nothing to report: no call
    ctx.run_process([sys.executable, "-c", "print('four')"])
    ctx.run_process([sys.executable, "-c", "print('five')"], on_line=ctx.activity)
    ctx.run_process([sys.executable, "-c", "print('six')"], on_line=ctx.activity, log_lines=False)
    calls = [(name, args[0]) for name, args in reporter.calls]
    assert calls == [("log_lines", ["one"]), ("log_lines", ["two", "three"]), ("activity", "busy"),
                     ("command_progress", 100), ("output_produced", [os.path.abspath("out.png")]),
                     ("timing", "rendering"), ("steps_completed", 1), ("log_lines", ["four"]), ("log_lines", ["five"]),
                     ("activity", "five"), ("activity", "six")]


def test_with_a_line_parser_each_line_is_logged_before_what_it_caused(recorder):
    ctx = base.CommandContext(recorder, logging.getLogger("test.reporter"))
    ctx.run_process([sys.executable, "-c", "print('a\\nb\\nc', flush=True)"], on_line=ctx.activity)
    assert recorder.events == [("log", "a"), ("activity", "a"), ("log", "b"), ("activity", "b"),
                               ("log", "c"), ("activity", "c")]


def test_a_batch_passing_the_cap_keeps_the_lines_before_it_and_counts_the_rest(tmp_path):
    queue = UpdateQueue(str(tmp_path / "q.sqlite"))
    reporter = TaskReporter(TASK, queue, settings(task_log_max_bytes=10))
    reporter.log_lines(["1234"], AT)  # 5 bytes with its newline
    with pytest.raises(LimitExceeded, match="task_log_max_bytes: the task log passed 10 bytes"):
        reporter.log_lines(["abc", "defg", "h", "i"], AT)  # "defg" would make 10 + 1
    reporter.log_lines(["later"], AT)
    reporter.stop()
    lines = [line.split(": ", 1)[1] for text in logs(queue) for line in text.split("\n")]
    assert lines == ["1234", "abc",
                     "worker: task_log_max_bytes: the task log passed 10 bytes; the rest of it is dropped",
                     "worker: 4 log line(s) dropped (task_log_max_bytes)"]


# --- steps (Flamenco 3): a task-wide cumulative count, never above the total ---------


def test_steps_are_cumulative_ride_with_the_next_update_and_stop_at_the_total(tmp_path):
    queue = UpdateQueue(str(tmp_path / "q.sqlite"))
    reporter = TaskReporter(TASK, queue, settings(push_act_max_interval=0), steps_total=3)
    reporter.steps_completed(1)
    reporter.steps_completed(1)
    reporter.steps_completed(5)  # a command counting too many: capped at the task's total
    reporter.steps_completed(1)  # nothing changes: no update
    reporter.flush()
    assert [item.payload.get("steps_completed") for item in queue.head()] in ([1, 2, 3], [3])


def test_without_a_total_steps_are_not_capped(tmp_path):
    queue = UpdateQueue(str(tmp_path / "q.sqlite"))
    reporter = TaskReporter(TASK, queue, settings())
    for _ in range(4):
        reporter.steps_completed(1)
    reporter.flush()
    assert reporter.steps == 4
    assert queue.head()[-1].payload["steps_completed"] == 4
