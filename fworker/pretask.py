"""Pre-task checks: before asking for work, make sure the paths a task will
need are there (section ``[pre_task_check]``: ``read.*`` paths must be
readable, ``write.*`` paths writable).  A failing check puts the worker in
state ``error`` until a later check passes, so that a node with an unmounted
share does not fail every task it gets."""
from __future__ import annotations

import os
import tempfile
import typing

from fworker.errors import ConfigError

SECTION = "pre_task_check"


def parse_section(values: dict[str, str], source: str) -> tuple[list[str], list[str]]:
    """``read.*`` and ``write.*`` keys into two lists of paths."""
    readable, writable = [], []
    for key, value in values.items():
        kind, _, _name = key.partition(".")
        if kind not in ("read", "write") or not _name:
            raise ConfigError(f"{source}: key {key!r} in [{SECTION}] must be read.NAME or write.NAME")
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{source}: [{SECTION}] {key} must be one path")
        (readable if kind == "read" else writable).append(value.strip())
    return readable, writable


def check(settings: typing.Any) -> list[str]:
    """Every reason not to take a task now; empty when all is well."""
    checks = getattr(settings, "pre_task_checks", None)
    if not checks:
        return []
    readable, writable = parse_section(checks, SECTION)
    return problems(readable, writable)


def problems(readable: list[str], writable: list[str]) -> list[str]:
    """What is wrong, one sentence per path; empty when all is well."""
    found = []
    for path in readable:
        if not os.path.exists(path):
            found.append(f"{path} does not exist")
        elif not os.access(path, os.R_OK):
            found.append(f"{path} is not readable")
    for path in writable:
        problem = _write_problem(path)
        if problem:
            found.append(problem)
    return found


def _write_problem(path: str) -> str | None:
    # Prove writability by creating and removing a file of our own: access()
    # lies on network shares and for root, and an existing file is never touched.
    if os.path.isdir(path):
        try:
            fd, probe = tempfile.mkstemp(prefix=".fworker-check-", dir=path)
        except OSError as ex:
            return f"{path} is not writable ({ex.strerror})"
        os.close(fd)
        os.unlink(probe)
        return None
    if os.path.exists(path):
        try:
            with open(path, "ab"):
                pass
        except OSError as ex:
            return f"{path} is not writable ({ex.strerror})"
        return None
    return f"{path} does not exist"
