"""Worker CPU per line of a render's output, in-process, against a bare baseline.

    python -m bench.lineparse            (about half a minute; prints a table, writes bench/results/lineparse.json)

The input is real Blender output (tests/data/blender_output/: 2,047 lines of
Debian's Blender 3.4.1: Cycles and EEVEE progress, Saved:, warnings, errors),
fed in 64 KiB chunks as ``ChildProcess`` reads them.  Rows, CPU time
(``time.process_time``, the best of several rounds) per line:

- bare: decode the bytes and split them into lines, nothing else;
- lines: ``BatchSplitter`` (what ``ChildProcess`` does with a chunk), lines dropped;
- exec: the lines into the task log (``CommandContext.handle_lines`` without a
  parser, a real ``TaskReporter`` on a real SQLite ``UpdateQueue``);
- parse: ``BlenderOutput.feed`` on every line, nothing reported;
- blender: what a ``blender_render`` command does per line: the log, the parser,
  progress, outputs, throttled activity and phase timings to the same reporter.

Absolute numbers depend on the machine's load; CPU time is robust to it.
"""
from __future__ import annotations

import fworker  # noqa: F401  (gevent's monkey patching first, as in the worker)

# isort: split

import logging
import os
import shutil
import tempfile
import time
import typing

from bench import common
from fworker import config
from fworker.commands.base import Command, CommandContext
from fworker.commands.blender import BlenderRun
from fworker.commands.blender_output import BlenderOutput
from fworker.lines import BatchSplitter
from fworker.queue import UpdateQueue
from fworker.reporter import TaskReporter
from tests.support import blender_captures

CHUNK = 65536
ROUNDS = 15


def inputs() -> list[tuple[bytes, int | None]]:
    return [((blender_captures.FOLDER / name).read_bytes(), total)
            for name, total in blender_captures.CAPTURES.items()]


def cpu_us_per_line(fn: typing.Callable[[], int], rounds: int = ROUNDS) -> float:
    """``fn`` handles the whole input and returns how many lines it saw."""
    fn()  # warm-up
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        lines = fn()
        best = min(best, time.process_time() - t0)
    return best / lines * 1e6


def chunks(data: bytes) -> list[bytes]:
    return [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)]


class _Task:
    """A reporter on a real SQLite queue, as a task runner makes it."""

    def __init__(self, folder: str):
        self.settings = config.defaults()
        self.queue = UpdateQueue(os.path.join(folder, "queue.sqlite"))

    def context(self) -> CommandContext:
        self.queue.delete_task("0" * 24)  # what the last round queued
        reporter = TaskReporter("0" * 24, self.queue, self.settings, command_count=1)
        return CommandContext(reporter, logging.getLogger("bench.lineparse"), self.settings)


class _Render(Command):
    name = "blender_render"


def main() -> None:
    data = inputs()
    folder = tempfile.mkdtemp(prefix="fworker-lineparse-")
    task = _Task(folder)

    def bare() -> int:
        count = 0
        for raw, _ in data:
            for chunk in chunks(raw):
                count += len(chunk.decode("utf-8", errors="replace").split("\n"))
        return count - len(data)  # the piece after each file's last line end

    def run_lines(handle_for: typing.Callable[[int | None], typing.Callable[[list[str]], None]]) -> int:
        count = 0
        for raw, total in data:
            handle = handle_for(total)

            def counted(lines: list[str], handle: typing.Callable[[list[str]], None] = handle) -> None:
                nonlocal count
                count += len(lines)
                handle(lines)

            splitter = BatchSplitter(counted, 65536)
            for chunk in chunks(raw):
                splitter.feed(chunk)
            splitter.close()
        return count

    def lines_only() -> int:
        return run_lines(lambda total: lambda lines: None)

    def exec_path() -> int:
        def handle_for(total: int | None) -> typing.Callable[[list[str]], None]:
            ctx = task.context()
            return lambda lines: ctx.handle_lines(lines, time.time(), None)
        return run_lines(handle_for)

    def parse_only() -> int:
        def handle_for(total: int | None) -> typing.Callable[[list[str]], None]:
            feed = BlenderOutput(total).feed
            return lambda lines: [feed(line) for line in lines] and None
        return run_lines(handle_for)

    def blender_path() -> int:
        runs: list[BlenderRun] = []

        def handle_for(total: int | None) -> typing.Callable[[list[str]], None]:
            ctx = task.context()
            run = BlenderRun(_Render(ctx), frames_total=total)
            runs.append(run)
            run._enter("starting blender")
            on_line = run._on_line
            return lambda lines: ctx.handle_lines(lines, time.time(), on_line)
        count = run_lines(handle_for)
        for run in runs:
            run._throttle.close()
        return count

    rows = []
    try:
        base = cpu_us_per_line(bare)
        for what, fn, how in [
            ("lines", lines_only, "BatchSplitter: decode, split, one call per chunk"),
            ("exec", exec_path, "+ the task log (TaskReporter on SQLite), no parser"),
            ("parse", parse_only, "decode/split + BlenderOutput.feed per line, nothing reported"),
            ("blender", blender_path, "+ log per line, parser, progress/outputs/activity/phases to the reporter"),
        ]:
            us = cpu_us_per_line(fn)
            rows.append({"what": what, "us_per_line": us, "bare_us_per_line": base, "ratio": us / base, "how": how})
    finally:
        task.queue.close()
        shutil.rmtree(folder, ignore_errors=True)
    lines = sum(raw.count(b"\n") for raw, _ in data)
    print(f"{lines} lines of Blender output; bare (decode + split): {base:.2f} us/line CPU")
    print(f"{'path':<9} {'us/line':>8} {'x bare':>7}  {'minus bare':>10}  how")
    for row in rows:
        print(f"{row['what']:<9} {row['us_per_line']:>8.2f} {row['ratio']:>7.1f}  "
              f"{row['us_per_line'] - base:>10.2f}  {row['how']}")
    common.save_standalone("lineparse", lines=lines, bare_us_per_line=base, rows=rows)


if __name__ == "__main__":
    main()
