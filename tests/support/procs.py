"""Processes a test starts on purpose to escape the worker, found by a marker unique to
the test run (a process left by an earlier or concurrent run is never taken for this
run's), and killed whatever the outcome."""
from __future__ import annotations

import shlex
import sys
import uuid

import psutil

PY = sys.executable


def new_marker(what: str) -> str:
    return f"fworker-test-{what}-{uuid.uuid4().hex}"


def marked(marker: str) -> list[psutil.Process]:
    """Live processes with ``marker`` in their command line (zombies are gone)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in arg for arg in proc.info["cmdline"] or ()) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def escapees(marker: str, role: str = "escapee") -> list[psutil.Process]:
    """The sleepers of ``double_fork(marker)`` (role "escapee"), of
    ``background_helper(marker)`` ("helper") or of ``keep_running(marker)`` ("main")."""
    found = []
    for proc in marked(marker):
        try:
            # The Python itself, not setsid or env on their way to exec it.
            if proc.cmdline()[:1] == [PY] and proc.cmdline()[-1:] == [f"{marker}-{role}"]:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def kill_marked(marker: str) -> None:
    for proc in marked(marker):
        try:
            proc.kill()
        except psutil.Error:
            continue


def sleeper(mark: str) -> str:
    """Shell words: a Python that sleeps 300 s, ``mark`` its last argument."""
    return shlex.join([PY, "-c", "import time; time.sleep(300)", mark])


def double_fork(marker: str, then: str = "") -> list[str]:
    """A command line that, after 0.3 s (past the worker's first scan of its tree),
    starts a sleeper through a subshell that exits at once (a double fork), in a
    session of its own (setsid), with an empty environment (env -i), still holding
    stdout and stderr; prints "spawned"; then runs ``then`` (shell code)."""
    script = f"sleep 0.3; (setsid env -i {sleeper(marker + '-escapee')} &); echo spawned; {then}"
    return ["sh", "-c", script]


def keep_running(marker: str) -> str:
    """Shell code for ``then``: become a marked sleeper (the command keeps running)."""
    return f"exec {sleeper(marker + '-main')}"


def background_helper(marker: str, then: str = "") -> list[str]:
    """A command line that starts a sleeper in the background, keeping its environment
    and letting go of the output; prints "helper started"; then runs ``then``."""
    return ["sh", "-c", f"{sleeper(marker + '-helper')} >/dev/null 2>&1 & echo helper started; {then}"]
