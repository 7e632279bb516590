"""Flamenco 3's commands that need nothing but the worker: echo, sleep, exec,
with Flamenco 3's parameter names (docs/COMMANDS.md).  They share the 2.x
commands' machinery (``CommandContext``)."""
from __future__ import annotations

import shlex
import time
import typing

from fworker.commands.base import Command, register


@register
class Echo3(Command):
    name = "echo"
    dialects = ("v3",)

    def validate(self, settings: dict[str, typing.Any]) -> dict[str, typing.Any]:
        return {"message": self.require_str(settings, "message", allow_empty=True)}

    def execute(self, settings: dict[str, typing.Any]) -> None:
        self.ctx.log(settings["message"])


@register
class Sleep3(Command):
    name = "sleep"
    dialects = ("v3",)

    def validate(self, settings: dict[str, typing.Any]) -> dict[str, typing.Any]:
        return {"duration_in_seconds": self.require_number(settings, "duration_in_seconds", minimum=0)}

    def execute(self, settings: dict[str, typing.Any]) -> None:
        seconds = settings["duration_in_seconds"]
        self.ctx.log(f"sleeping {seconds} seconds")
        # Abortable: killing the task's greenlet interrupts the wait.
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.ctx.sleep(left)
        self.ctx.log(f"slept {seconds} seconds")


@register
class Exec3(Command):
    """``exe`` with ``args`` as an argument list (no shell, no splitting)."""

    name = "exec"
    dialects = ("v3",)

    def validate(self, settings: dict[str, typing.Any]) -> dict[str, typing.Any]:
        exe = self.require_str(settings, "exe", allow_empty=False)
        args = settings.get("args", [])
        if not isinstance(args, list) or not all(isinstance(arg, str) for arg in args):
            raise self._invalid("args", "must be a list of strings")
        return {"args": [exe, *args]}

    def execute(self, settings: dict[str, typing.Any]) -> None:
        args = settings["args"]
        self.ctx.activity(f"running {shlex.join(args)}")
        self.ctx.run_process(args)
