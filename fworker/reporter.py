"""Turns what a running task says into queued updates for the Manager.

Log lines are timestamped and batched; activity and progress are throttled
to one update per ``push_act_max_interval`` (the newest value wins, nothing is
starved: a ticker greenlet pushes what waited).  Before any update that is
not a log batch, the pending log lines are queued first, so the Manager sees
everything in the order it happened.

A task's log is capped at ``task_log_max_bytes``: the line that would pass the
cap is replaced by a note saying so, every later line is dropped (and counted),
and ``LimitExceeded`` is raised in the greenlet that logged it (the task's), so
that the task fails instead of filling the queue and the Manager's disk.
Activity texts are cut to one line of at most ``MAX_ACTIVITY`` characters.
"""
from __future__ import annotations

import logging
import time
import typing

import gevent

from fworker.config import Settings
from fworker.queue import UpdateQueue

log = logging.getLogger(__name__)

# The Manager shows the activity as one line; a command may produce a huge
# text (a setting's repr in an error message), which is no use there.
MAX_ACTIVITY = 1000

# Buffered log text is queued once it passes this many characters, whatever
# push_log_max_lines says: for short lines a count of lines alone meant a
# SQLite commit, a JSON encoding and a queue row per ~100 KB; for very long
# lines it let megabytes gather in memory.
LOG_FLUSH_CHARS = 256 * 1024


class LimitExceeded(BaseException):
    """A limit on a task was hit (``task_log_max_bytes``, ``task_timeout``): the
    task fails with ``reason``.  A BaseException, like gevent's GreenletExit, so
    that a command's ``except Exception`` does not swallow it."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def one_line(text: str, limit: int = MAX_ACTIVITY) -> str:
    """``text`` on one line, cut to ``limit`` characters (marked with ...)."""
    text = " ".join(str(text).splitlines())
    return text if len(text) <= limit else text[: limit - 3] + "..."


_second_stamp: list[typing.Any] = [None, ""]  # [whole second, its formatted date and time]
_last_stamp: list[typing.Any] = [None, ""]  # [the last ``at`` given, its stamp]


def log_timestamp(at: float | None = None) -> str:
    """ISO-8601 UTC with microseconds, of ``at`` (``time.time()``) or now.  Wall
    clock on purpose: these are read by people upstream.  The date and time are
    formatted once per second: strftime on every line was a third of the
    worker's CPU on chatty logs.  The stamp of the last ``at`` is kept: the lines
    of one read of a child's output share it, and a parsed command logs them one
    at a time."""
    if at is not None and at == _last_stamp[0]:
        return typing.cast(str, _last_stamp[1])
    now = time.time() if at is None else at
    second = int(now)
    if second != _second_stamp[0]:
        _second_stamp[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))]
    stamp = f"{_second_stamp[1]}.{int((now - second) * 1_000_000):06d}Z"
    if at is not None:
        _last_stamp[:] = [at, stamp]
    return stamp


class LocalLog(typing.Protocol):
    """The task's log kept on this machine (``fworker.logsetup.TaskLog``): it gets
    the stamped lines a batch at a time, as they go to the Manager."""

    def write_lines(self, lines: list[str]) -> None: ...


class TaskReporter:
    def __init__(self, task_id: str, queue: UpdateQueue, settings: Settings, *,
                 command_count: int = 1, task_logger: logging.Logger | None = None,
                 on_output: typing.Callable[[list[str]], None] | None = None,
                 local_log: LocalLog | None = None, steps_total: int = 0):
        self.task_id = task_id
        # Task-wide steps done (cumulative, as Flamenco 3 wants them), never above
        # steps_total when the Manager gave one (0: it gave none).
        self.steps_total = max(0, steps_total)
        self.steps = 0
        self.queue = queue
        self.log_interval = settings.push_log_max_interval
        self.log_max_lines = settings.push_log_max_lines
        self.act_interval = settings.push_act_max_interval
        self.command_count = max(1, command_count)
        self.command_idx = 0
        self.task_logger = task_logger or log
        self.on_output = on_output
        self.local_log = local_log  # a logsetup.TaskLog: the task log kept on this machine
        self.log_max_bytes = settings.task_log_max_bytes
        self.log_bytes = 0  # bytes of log lines accepted so far, for the cap (log_lines counts only under one)
        self.dropped_lines = 0  # lines dropped after the cap was hit
        self.timings: dict[str, float] = {}
        self._lines: list[str] = []
        self._chars = 0  # characters in _lines, for the LOG_FLUSH_CHARS rule
        self._lines_since = time.monotonic()
        self._pending: dict[str, typing.Any] = {}
        self._last_act_push = 0.0
        self._ticker: gevent.Greenlet[..., typing.Any] | None = None

    # The Reporter protocol (fworker.commands.base.Reporter).

    def log_lines(self, lines: list[str], at: float | None = None) -> None:
        """``lines``, in order, for the task log (one line is a batch of one).  Lines
        handed over together came together, so they share one timestamp."""
        if not lines:
            return
        if self.dropped_lines:
            self.dropped_lines += len(lines)
            return
        if self.log_max_bytes:
            self._count_bytes(lines, at)
        self._add_lines(lines, at)

    def worker_line(self, line: str) -> None:
        """A line of the worker's own about the task, never dropped by the cap."""
        self._add_lines([line])

    def _count_bytes(self, lines: list[str], at: float | None) -> None:
        """Count ``lines`` against ``task_log_max_bytes``.  At the line that would
        pass it: the lines before it go to the log, then the cap's note; that line
        and the rest are dropped (and counted), and ``LimitExceeded`` is raised."""
        # One encoding of the whole batch; line by line only when it would pass the cap.
        text = lines[0] if len(lines) == 1 else "\n".join(lines)
        size = len(text.encode("utf-8", errors="replace")) + 1
        if self.log_bytes + size <= self.log_max_bytes:
            self.log_bytes += size
            return
        for index, line in enumerate(lines):
            line_size = len(line.encode("utf-8", errors="replace")) + 1
            if self.log_bytes + line_size > self.log_max_bytes:
                self._add_lines(lines[:index], at)
                self.dropped_lines = len(lines) - index
                reason = f"task_log_max_bytes: the task log passed {self.log_max_bytes} bytes"
                self.worker_line(f"worker: {reason}; the rest of it is dropped")
                raise LimitExceeded(reason)
            self.log_bytes += line_size

    def _add_lines(self, lines: list[str], at: float | None = None) -> None:
        if not lines:
            return
        if self.log_interval <= 0 and len(lines) > 1:
            # push_log_max_interval = 0 promises every line as its own update, at once:
            # what it costs is what was asked for.
            for line in lines:
                self._add_lines([line], at)
            return
        if not self._lines:
            self._lines_since = time.monotonic()
        stamp = log_timestamp(at)
        if len(lines) == 1:  # a parsed command's lines come one at a time
            self._lines.append(f"{stamp}: {lines[0]}")
            self._chars += len(lines[0])
        else:
            self._lines.extend([f"{stamp}: {line}" for line in lines])
            self._chars += sum(map(len, lines))
        if (len(self._lines) >= self.log_max_lines or self._chars >= LOG_FLUSH_CHARS
                or self.log_interval <= 0):
            self.flush_log()

    def activity(self, text: str) -> None:
        text = one_line(text)
        self._pending["activity"] = text
        self.task_logger.debug("activity: %s", text)
        self._maybe_push_pending()

    def command_progress(self, percent: int) -> None:
        self._pending["command_progress_percentage"] = percent
        done = (self.command_idx + percent / 100) / self.command_count
        self._pending["task_progress_percentage"] = max(0, min(100, int(done * 100)))
        self._maybe_push_pending()

    def output_produced(self, paths: list[str]) -> None:
        if self.on_output is not None:
            self.on_output(paths)

    def timing(self, phase: str, seconds: float) -> None:
        self.timings[phase] = round(self.timings.get(phase, 0.0) + seconds, 3)

    def steps_completed(self, count: int) -> None:
        steps = self.steps + max(0, count)
        if self.steps_total:
            steps = min(steps, self.steps_total)
        if steps == self.steps:
            return
        self.steps = steps
        # The cumulative count goes with the next update; coalescing keeps the newest.
        self._pending["steps_completed"] = steps
        self._maybe_push_pending()

    # Used by the runner.

    def start(self) -> None:
        period = max(0.05, min(self.log_interval, self.act_interval) or 0.05)
        self._ticker = gevent.spawn(self._tick_loop, period)

    def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.kill()
            self._ticker = None
        if self.dropped_lines > 1:
            self.worker_line(f"worker: {self.dropped_lines} log line(s) dropped (task_log_max_bytes)")
            self.dropped_lines = 1
        self.flush()

    def push_now(self, payload: dict[str, typing.Any]) -> None:
        """Queue ``payload`` at once, after whatever was pending; pending
        activity/progress values it does not override go with it."""
        self.flush_log()
        merged = {**self._pending, **payload}
        if "activity" in merged:
            merged["activity"] = one_line(merged["activity"])
        self._pending.clear()
        self._last_act_push = time.monotonic()
        self.queue.push(self.task_id, merged)

    def command_started(self, index: int, name: str) -> None:
        self.command_idx = index
        self.push_now({"activity": f"starting {name}", "current_command_idx": index,
                       "command_progress_percentage": 0,
                       "task_progress_percentage": int(100 * index / self.command_count)})

    def command_finished(self, index: int, name: str) -> None:
        self.push_now({"activity": f"finished {name}", "current_command_idx": index,
                       "command_progress_percentage": 100,
                       "task_progress_percentage": int(100 * (index + 1) / self.command_count)})

    def flush(self) -> None:
        self.flush_log()
        if self._pending:
            self.push_now({})

    def flush_log(self) -> None:
        if self._lines:
            lines, self._lines, self._chars = self._lines, [], 0
            if self.local_log is not None:
                self.local_log.write_lines(lines)
            self.queue.push(self.task_id, {"log": "\n".join(lines)})

    def final_payload(self, status: str, activity: str) -> dict[str, typing.Any]:
        payload: dict[str, typing.Any] = {"task_status": status, "activity": one_line(activity)}
        if self.timings:
            payload["metrics"] = {"timing": dict[str, typing.Any](self.timings)}
        return payload

    def _maybe_push_pending(self) -> None:
        if time.monotonic() - self._last_act_push >= self.act_interval:
            self.push_now({})

    def _tick_loop(self, period: float) -> None:
        while True:
            gevent.sleep(period)
            now = time.monotonic()
            if self._lines and now - self._lines_since >= self.log_interval:
                self.flush_log()
            if self._pending and now - self._last_act_push >= self.act_interval:
                self.push_now({})
