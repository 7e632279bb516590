"""Everything a task started, found without having to catch it in a scan, and stopped
at the task's end.

A process of a task can leave everything a scan recognises it by: its process group and
session (``setsid``), the token in its environment (``env -i``), its parent (a double
fork whose middle process lives for a millisecond).  Two things it cannot leave:

- **Its cgroup**, where the system lets the worker make one (``fworker.cgroups``): each
  child of the task starts in a cgroup of its own inside the task's, joined between fork
  and exec, so every process it ever forks is in it.  ``cgroup.kill`` stops them all.
- **The worker**, as the subreaper (``proctree.enable_subreaper``): an orphan is
  re-parented to the worker, not to init.  So while a task runs, every child of the
  worker that was not one before the task began is the task's (its commands' children,
  and orphans of their trees), with everything below it.

``TaskScope`` is the task's share of both; ``stop()`` stops all of it (SIGTERM, a grace
period, SIGKILL, with ``cgroup.kill`` each round), whatever asked for the end: the last
command done, a failure, an abort, the worker's shutdown.  Only one task runs at a time,
so the running scope is this module's ``current()``, which ``fworker.process`` asks for a
child's cgroup.
"""
from __future__ import annotations

import hashlib
import logging
import os
import uuid

import psutil

from fworker import cgroups, proctree

log = logging.getLogger(__name__)

# Why cgroups cannot be used here, once known (None: not probed yet, "": usable).
_unavailable: str | None = None
_directory: str | None = None  # where task cgroups go, once found
_current: TaskScope | None = None
# Children of this process that are not a task's (a program embedding the worker).
_excluded: set[psutil.Process] = set()


def mechanism() -> str:
    """How this process contains tasks, in words (for logs and the report)."""
    directory = _parent_directory()
    if directory is None:
        return f"process tree and adopted orphans (no cgroup: {_unavailable})"
    return f"a cgroup per task under {directory}, plus adopted orphans"


def _parent_directory() -> str | None:
    """Where task cgroups go, or None (``_unavailable`` says why).  Found once per
    process: it is asked at least twice a task."""
    global _unavailable, _directory  # noqa: PLW0603  (whether and where cgroups are used: found once per process)
    if _unavailable:
        return None
    if _directory is not None:
        return _directory
    try:
        directory = cgroups.own_directory()
    except cgroups.Unavailable as exc:
        _unavailable = str(exc)
        return None
    if not os.access(directory, os.W_OK):
        _unavailable = f"{directory} is not writable by this user (no delegated subtree)"
        return None
    _directory = directory
    return directory


def _prefix(owner: str | None) -> str:
    """The start of the names of an owner's task cgroups: the owner mark (a path) hashed,
    so that a worker finds those an earlier process of its own left, and no other's."""
    tag = hashlib.sha256(owner.encode("utf-8", "surrogatepass")).hexdigest()[:12] if owner else "anon"
    return f"fworker-{tag}-"


def _make_cgroup(label: str, owner: str | None) -> cgroups.Cgroup | None:
    global _unavailable  # noqa: PLW0603  (why cgroups cannot be used: found once per process)
    directory = _parent_directory()
    if directory is None:
        return None
    try:
        name = f"{_prefix(owner)}{os.getpid()}-{label}-{uuid.uuid4().hex[:8]}"
        group = cgroups.Cgroup.make(directory, name)
    except OSError as exc:
        _unavailable = f"cannot make a cgroup in {directory}: {exc.strerror}"
        log.info("tasks run without a cgroup: %s", _unavailable)
        return None
    if _unavailable is None:
        _unavailable = ""
        log.info("each task runs in a cgroup of its own under %s", directory)
    return group


def stale_cgroups(owner: str) -> list[cgroups.Cgroup]:
    """The task cgroups of ``owner`` made by another process (an earlier worker process
    of the same owner, killed before it could remove them), empty or not."""
    directory = _parent_directory()
    if directory is None:
        return []
    prefix, mine = _prefix(owner), f"{_prefix(owner)}{os.getpid()}-"
    try:
        names = os.listdir(directory)
    except OSError as exc:
        log.warning("cannot list %s: %s", directory, exc.strerror)
        return []
    return [cgroups.Cgroup(os.path.join(directory, name)) for name in sorted(names)
            if name.startswith(prefix) and not name.startswith(mine)]


def exclude(pid: int) -> None:
    """Child process ``pid`` of this process is not a task's, even if it starts while a
    task runs (for a program that embeds the worker and starts processes of its own)."""
    _excluded.intersection_update(proc for proc in _excluded if proctree.alive(proc))
    _excluded.update(proctree.processes([pid]))


def current() -> TaskScope | None:
    """The scope of the task running now, if any."""
    return _current


def direct_children() -> list[psutil.Process]:
    """This process's children now (its own and adopted orphans)."""
    return proctree.processes(proctree.children_pids(os.getpid()))


class TaskScope:
    """The processes of one task.  ``owner``: the worker's owner mark (its cgroups'
    names carry it, for ``stale_cgroups``).  ``use_cgroup=False`` only walks the tree."""

    def __init__(self, label: str, *, owner: str | None = None, grace: float = 2.0,
                 use_cgroup: bool = True, logger: logging.Logger = log):
        self.label = label
        self.owner = owner
        self.grace = grace
        self._log = logger
        self._before: set[psutil.Process] = set()
        self.cgroup: cgroups.Cgroup | None = None
        self._use_cgroup = use_cgroup
        self._children = 0

    def __enter__(self) -> TaskScope:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> TaskScope:
        """From now on, what becomes this process's child is the task's."""
        global _current  # noqa: PLW0603  (the one running task's scope in this process)
        # pid and create_time: a process that ends and whose pid is reused is new.
        self._before = set(direct_children())
        if self._use_cgroup:
            self.cgroup = _make_cgroup(self.label, self.owner)
        _current = self
        return self

    def child_cgroup(self) -> cgroups.Cgroup | None:
        """A new cgroup inside the task's for one child process, or None."""
        if self.cgroup is None:
            return None
        self._children += 1
        try:
            return self.cgroup.child(f"c{self._children}")
        except OSError as exc:
            self._log.warning("cannot make a cgroup for a child of task %s: %s", self.label, exc.strerror)
            return None

    def members(self) -> list[psutil.Process]:
        """Every live process of the task: the cgroup's, and the subtrees of this
        process's children that were not its children when the task began."""
        found = {proc.pid: proc for proc in self._adopted()}
        if self.cgroup is not None:
            for proc in proctree.cgroup_members(self.cgroup):
                found.setdefault(proc.pid, proc)
        me = os.getpid()
        return [proc for pid, proc in found.items() if pid != me and proctree.alive(proc)]

    def _adopted(self) -> list[psutil.Process]:
        roots = [proc for proc in direct_children() if proc not in self._before and proc not in _excluded]
        return proctree.subtrees(roots)

    def stop(self, grace: float) -> proctree.Left:
        """Stop every process of the task; what survived."""
        first = self.members()
        if not first:
            return proctree.Left([])
        self._log.warning("stopping pids %s, still running at the end of task %s",
                          proctree.pids(first), self.label)
        kill_all = self.cgroup.kill if self.cgroup is not None else None
        left = proctree.stop(self.members, grace, first=first, kill_all=kill_all,
                             logger=self._log, name=f"task {self.label}")
        if left:
            self._log.error("task %s: %s survived SIGKILL", self.label, left)
        return left

    def close(self) -> proctree.Left:
        """The task is over: stop what is left of it and remove its cgroup."""
        global _current  # noqa: PLW0603  (the one running task's scope in this process)
        try:
            return self.stop(self.grace)
        finally:
            if _current is self:
                _current = None
            if self.cgroup is not None:
                self.cgroup.remove()  # a cgroup still holding a process stays, logged
