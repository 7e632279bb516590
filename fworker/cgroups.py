"""Control groups (cgroup v2) as containers for the processes of a task, where the system
lets this process make them.

A process cannot leave its cgroup by forking, by ``setsid``, by clearing its environment
or by losing its parent: what a task starts inside its cgroup is found by reading the
cgroup's ``cgroup.procs`` files, and killed all at once by writing ``cgroup.kill``
(Linux 5.14; before that, each member is sent SIGKILL until none is left).

A cgroup is made inside this process's own (``/proc/self/cgroup``, the ``0::`` line) on
the cgroup2 file system (``/proc/self/mountinfo``): the subtree a service manager
delegates to a service (systemd's ``Delegate=yes``), or, for root, the hierarchy
itself.  Where there is none, or it is not writable (an unprivileged user without
delegation, a container's read-only mount, cgroup v1 only), ``probe()`` says why and
callers fall back on walking the process tree.
"""
from __future__ import annotations

import errno
import logging
import os
import signal

log = logging.getLogger(__name__)

_SELF_CGROUP = "/proc/self/cgroup"
_MOUNTINFO = "/proc/self/mountinfo"


class Unavailable(Exception):
    """No cgroup can be made here; the message says why."""


def own_directory(cgroup_file: str = _SELF_CGROUP, mountinfo: str = _MOUNTINFO) -> str:
    """The directory of this process's cgroup v2, or Unavailable saying why not."""
    try:
        with open(cgroup_file, encoding="utf-8") as file:
            lines = file.read().splitlines()
    except OSError as exc:
        raise Unavailable(f"cannot read {cgroup_file}: {exc.strerror}") from None
    paths = [line[3:] for line in lines if line.startswith("0::")]
    if not paths:
        raise Unavailable(f"{cgroup_file} names no cgroup v2 (cgroup v1 only)")
    path = paths[0]
    mount = _cgroup2_mount(mountinfo, path)
    if mount is None:
        raise Unavailable(f"no cgroup2 file system mounted where cgroup {path} can be seen")
    return mount


def _cgroup2_mount(mountinfo: str, path: str) -> str | None:
    """The directory of cgroup ``path`` under a mounted cgroup2 file system, if any."""
    try:
        with open(mountinfo, encoding="utf-8") as file:
            lines = file.read().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if "-" not in fields:
            continue
        dash = fields.index("-")
        if fields[dash + 1] != "cgroup2" or len(fields) < 5:
            continue
        root, mountpoint = _unescape(fields[3]), _unescape(fields[4])
        if path == root or path.startswith(root.rstrip("/") + "/"):
            inside = path[len(root.rstrip("/")):].lstrip("/")
            directory = os.path.join(mountpoint, inside) if inside else mountpoint
            if os.path.isdir(directory):
                return directory
    return None


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as octal escapes.
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


class Cgroup:
    """One cgroup directory this process made (or may make)."""

    def __init__(self, path: str):
        self.path = path

    def __repr__(self) -> str:
        return f"Cgroup({self.path!r})"

    @property
    def procs_file(self) -> str:
        return os.path.join(self.path, "cgroup.procs")

    @classmethod
    def make(cls, parent: str, name: str) -> Cgroup:
        """A new cgroup ``name`` under the directory ``parent``; OSError if the system
        refuses (EACCES, EROFS, ...)."""
        path = os.path.join(parent, name)
        os.mkdir(path)
        return cls(path)

    def child(self, name: str) -> Cgroup:
        return Cgroup.make(self.path, name)

    def pids(self) -> list[int]:
        """Every process in this cgroup and the cgroups below it (a process listed
        here may be gone by the time it is used)."""
        found: list[int] = []
        for directory, _, _ in os.walk(self.path):
            try:
                with open(os.path.join(directory, "cgroup.procs"), "rb") as file:
                    found.extend(int(pid) for pid in file.read().split())
            except FileNotFoundError:
                continue  # removed meanwhile
        return found

    def contains(self, pid: int) -> bool:
        """Whether process ``pid`` is in this cgroup or below it."""
        return pid in self.pids()

    def kill(self) -> None:
        """SIGKILL to every process in this cgroup and below, forks racing it included
        (``cgroup.kill``); without it, each member found, until none is found."""
        try:
            with open(os.path.join(self.path, "cgroup.kill"), "w", encoding="ascii") as file:
                file.write("1")
            return
        except FileNotFoundError:
            pass  # an older kernel: one by one below
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue

    def remove(self) -> bool:
        """Remove this cgroup and those below it, deepest first; False when one
        still has a process (EBUSY): it stays, and the failure is logged."""
        removed = True
        for directory, _, _ in sorted(os.walk(self.path), key=lambda entry: -entry[0].count(os.sep)):
            try:
                os.rmdir(directory)
            except FileNotFoundError:
                continue
            except OSError as exc:
                if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                    raise
                log.warning("cgroup %s still has processes; left in place", directory)
                removed = False
        return removed


def join_in_child(procs_file: str) -> None:
    """``preexec_fn`` part: move the calling process (a child between fork and exec)
    into the cgroup of ``procs_file``.  A failure is left for the parent to find
    (``Cgroup.contains``): raising here would fail the command for a containment
    that the tree scan still provides."""
    try:
        fd = os.open(procs_file, os.O_WRONLY)
    except OSError:
        return
    try:
        os.write(fd, b"0")  # 0: the writing process itself
    except OSError:
        pass  # the parent checks membership and moves the child itself
    finally:
        os.close(fd)


def move(pid: int, procs_file: str) -> None:
    """Move process ``pid`` into the cgroup of ``procs_file`` (OSError if refused)."""
    with open(procs_file, "w", encoding="ascii") as file:
        file.write(str(pid))
