"""Pre-task checks: before asking for work, make sure the paths a task will
need are there (section ``[pre_task_check]``: ``read.*`` paths must be
readable, ``write.*`` paths writable).  A failing check puts the worker in
state ``error`` until a later check passes, so that a node with an unmounted
share does not fail every task it gets.

One more reason not to take work: too little free disk space
(``min_free_disk_mb``) on the queue's file system or under a ``write.*`` path.

The worker may run these checks in a thread of gevent's pool (a hung network
mount must not freeze the hub): nothing here logs or waits on gevent, only
plain blocking calls, and every finding is returned."""
from __future__ import annotations

import os
import shutil
import tempfile

from fworker.config import Settings, parse_pre_task_checks


def check(settings: Settings) -> list[str]:
    """Every reason not to take a task now; empty when all is well."""
    readable, writable = parse_pre_task_checks(settings.pre_task_checks, "[pre_task_check]")
    found = problems(readable, writable)
    queue_db = settings.task_update_queue_db
    min_free_mb = settings.min_free_disk_mb
    if min_free_mb > 0:
        folders = [os.path.dirname(os.path.abspath(queue_db))] if queue_db else []
        found += disk_space_problems(folders + writable, min_free_mb)
    return found


def disk_space_problems(paths: list[str], min_free_mb: int) -> list[str]:
    """One sentence per file system with less than ``min_free_mb`` MB free."""
    found, seen = [], set()
    for path in paths:
        if not os.path.exists(path):
            continue  # problems() reports a missing write path; the queue's folder is made at start
        try:
            device = os.stat(path).st_dev
            free = shutil.disk_usage(path).free
        except OSError as ex:
            found.append(f"cannot measure the free space at {path} ({ex.strerror})")
            continue
        if device in seen:
            continue
        seen.add(device)
        if free < min_free_mb * 1024 * 1024:
            found.append(f"only {free / 1048576:.1f} MB free on the file system of {path} "
                         f"(min_free_disk_mb = {min_free_mb})")
    return found


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
