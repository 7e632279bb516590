"""Commands that need nothing but the worker: echo, log_a_lot, sleep, exec."""
from __future__ import annotations

import shlex
import time
import typing

from fworker.commands.base import Command, register


@register
class Echo(Command):
    name = "echo"

    def validate(self, settings: dict[str, typing.Any]) -> dict[str, typing.Any]:
        return {"message": self.require_str(settings, "message", allow_empty=True)}

    def execute(self, settings: dict[str, typing.Any]) -> None:
        self.ctx.log(settings["message"])


@register
class LogALot(Command):
    """A load test of log shipping."""

    name = "log_a_lot"

    def validate(self, settings: dict[str, typing.Any]) -> dict[str, typing.Any]:
        lines = self.optional_number(settings, "lines", 20000, minimum=0)
        return {"lines": int(typing.cast(float, lines))}  # never None: it has a default

    def execute(self, settings: dict[str, typing.Any]) -> None:
        lines = settings["lines"]
        self.ctx.activity(f"logging {lines} lines")
        filler = "This is a long log line produced to exercise log shipping. " * 2
        # A thousand lines per call: the reporter timestamps and buffers a batch at once.
        for start in range(0, lines, 1000):
            end = min(start + 1000, lines)
            self.ctx.log_lines([f"{i + 1}/{lines} {filler}" for i in range(start, end)])
            if end % 1000 == 0:
                self.ctx.progress(100 * end / lines)
                self.ctx.sleep(0)  # let the flusher and the may-i-run poller run


class Sleeping(Command):
    """The wait of both generations' sleep (simple3.py has Flamenco 3's), which name
    their setting differently."""

    def sleep_for(self, seconds: float) -> None:
        self.ctx.log(f"sleeping {seconds} seconds")
        # gevent timers may fire a hair early; the command promises the full time.
        # Abortable: killing the task's greenlet interrupts the wait.
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.ctx.sleep(left)
        self.ctx.log(f"slept {seconds} seconds")


@register
class Sleep(Sleeping):
    name = "sleep"

    def validate(self, settings: dict[str, typing.Any]) -> dict[str, typing.Any]:
        return {"time_in_seconds": self.require_number(settings, "time_in_seconds", minimum=0)}

    def execute(self, settings: dict[str, typing.Any]) -> None:
        self.sleep_for(settings["time_in_seconds"])


class RunningArgs(Command):
    """Runs the argument list its validate() makes (no shell): the exec of both
    generations (simple3.py has Flamenco 3's), whose parameters differ."""

    def execute(self, settings: dict[str, typing.Any]) -> None:
        args = settings["args"]
        self.ctx.activity(f"running {shlex.join(args)}")
        self.ctx.run_process(args)


@register
class Exec(RunningArgs):
    """Run a command line as a subprocess (split with shlex, no shell)."""

    name = "exec"

    def validate(self, settings: dict[str, typing.Any]) -> dict[str, typing.Any]:
        return {"args": self.require_cmdline(settings, "cmd")}
