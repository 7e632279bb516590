"""The ``hello`` command: an example of an fworker plug-in command.

Settings:
- ``who`` (string, default ``world``): whom to greet.
- ``child_seconds`` (number >= 0, default 0): how long the greeting child
  process stays alive after greeting.  A long one lets a test cancel the task
  while the child runs, to see that the worker kills it.
"""
from __future__ import annotations

import sys

import fworker

# Run by the child process: greet, say who it is, then linger.
CHILD = ("import os, sys, time\n"
         "print('hello from child process', os.getpid(), 'to', sys.argv[1], flush=True)\n"
         "time.sleep(float(sys.argv[2]))\n")


class Hello(fworker.Command):
    """Log a greeting, then run a small child process that greets too."""

    name = "hello"

    def validate(self, settings: dict) -> dict:
        # Only checks: validate() must not change anything.
        return {
            "who": self.optional_str(settings, "who", "world", allow_empty=False),
            "child_seconds": self.optional_number(settings, "child_seconds", 0, minimum=0),
        }

    def execute(self, settings: dict) -> None:
        who = settings["who"]
        self.ctx.activity(f"greeting {who}")
        self.ctx.log(f"hello, {who}!")
        # ctx.run_process: output goes to the task log; an abort kills the child's whole tree.
        self.ctx.run_process([sys.executable, "-c", CHILD, who, str(settings["child_seconds"])])
        self.ctx.progress(100)
