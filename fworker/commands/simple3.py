"""Flamenco 3's commands that need nothing but the worker: echo, sleep, exec,
with Flamenco 3's parameter names (docs/COMMANDS.md).  What they do is the 2.x
commands' of simple.py; only their parameters differ."""
from __future__ import annotations

import typing

from fworker.commands.base import register
from fworker.commands.simple import Echo, RunningArgs, Sleeping


@register
class Echo3(Echo):
    dialects = ("v3",)


@register
class Sleep3(Sleeping):
    name = "sleep"
    dialects = ("v3",)

    def validate(self, settings: dict[str, typing.Any]) -> dict[str, typing.Any]:
        return {"duration_in_seconds": self.require_number(settings, "duration_in_seconds", minimum=0)}

    def execute(self, settings: dict[str, typing.Any]) -> None:
        self.sleep_for(settings["duration_in_seconds"])


@register
class Exec3(RunningArgs):
    """``exe`` with ``args`` as an argument list (no shell, no splitting)."""

    name = "exec"
    dialects = ("v3",)

    def validate(self, settings: dict[str, typing.Any]) -> dict[str, typing.Any]:
        exe = self.require_str(settings, "exe", allow_empty=False)
        args = settings.get("args", [])
        if not isinstance(args, list) or not all(isinstance(arg, str) for arg in args):
            raise self._invalid("args", "must be a list of strings")
        return {"args": [exe, *args]}
