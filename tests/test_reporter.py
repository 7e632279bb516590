"""fworker.reporter: log lines are stamped with the time they came."""
import calendar
import logging
import sys
import time

from fworker import config
from fworker.commands import base
from fworker.queue import UpdateQueue
from fworker.reporter import TaskReporter
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
    assert logs(queue) == ["2026-01-02T03:04:05.250000Z: one\n2026-01-02T03:04:05.250000Z: two\n"
                           "2026-01-02T03:04:06.250000Z: three"]


def test_every_line_its_own_update_keeps_the_time_too(tmp_path):
    queue = UpdateQueue(str(tmp_path / "q.sqlite"))
    reporter = TaskReporter(TASK, queue, settings(push_log_max_interval=0))
    reporter.log_lines(["one", "two"], AT)
    assert logs(queue) == ["2026-01-02T03:04:05.250000Z: one", "2026-01-02T03:04:05.250000Z: two"]


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
