"""The descendants of one child process, found cheaply enough to look every second.

Render tools start helpers that may leave the process group (setsid) or outlive their
parent.  ``Descendants.scan()`` finds the child's subtree; orphans re-parented to the
worker (``enable_subreaper()``) that carry the child's token in their environment
(``TOKEN_VAR``) or are in its session, with their subtrees; and every process an earlier
scan found, known by pid *and* create_time so that a reused pid is not.  Only those
earlier scans find a descendant that left the session, dropped the token and lost its
parent: re-parented to init (no subreaper) or to the worker, nothing else leads to it.
Two things do not depend on catching it in a scan: the child's cgroup (``cgroup``, where
``fworker.containment`` could make one), and, for the task as a whole, that every new
child of the worker during a task is the task's (``fworker.containment.TaskScope``).

A scan walks down the worker's own tree through ``/proc/<pid>/task/<tid>/children``
(Linux), so it costs in proportion to that tree.  Mapping every process's parent, as
psutil's ``children()`` does, reads the stat file of every process on the machine:
~5 ms of CPU a scan with 220 processes, ~10 % of the worker's CPU during a render.
Without those files (not Linux, a kernel without CONFIG_PROC_CHILDREN) a scan still
maps every process's parent, once.

``stop()`` is the one way a tree is stopped (a child's, in ``fworker.process``; what an
earlier worker left, in ``fworker.leftovers``): SIGTERM, a grace period, SIGKILL.
``exit_at_once()`` kills every descendant of the worker and exits without waiting.
Every child asks for SIGKILL when the worker dies (``DieWithParent``) and carries its
worker's owner mark (``OWNER_VAR``) for ``fworker.leftovers`` to find it by.
"""
from __future__ import annotations

import collections
import ctypes
import dataclasses
import logging
import os
import signal
import sys
import time
import typing
from collections.abc import Callable

import gevent
import psutil

from fworker import cgroups

log = logging.getLogger(__name__)

TOKEN_VAR = "FWORKER_CHILD_TOKEN"
OWNER_VAR = "FWORKER_OWNER"
KILL_TIMEOUT = 5.0  # after SIGKILL only a process in uninterruptible sleep takes long
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37
# The kernel has these files for every process or for none.
_PROC_CHILDREN = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError) as exc:
        log.debug("no prctl: %s", exc)
        return None


# Loaded once in the worker: a child must not load libraries between fork and exec.
PRCTL = _load_prctl()


def enable_subreaper() -> bool:
    """Make this process adopt its orphaned descendants instead of init (Linux), so they
    can still be found, killed, and reaped by gevent.  Process-wide."""
    if PRCTL is None:
        return False
    one, zero = ctypes.c_ulong(1), ctypes.c_ulong(0)
    result = PRCTL(_PR_SET_CHILD_SUBREAPER, one, zero, zero, zero)
    if result != 0:
        log.debug("prctl(PR_SET_CHILD_SUBREAPER) failed: %s", os.strerror(ctypes.get_errno()))
    return result == 0


class DieWithParent:
    """``preexec_fn``: in the child, between fork and exec, join the cgroup of
    ``cgroup_procs`` (its ``cgroup.procs`` file, if any: before the child can fork)
    and ask for SIGKILL when the worker dies.  If the worker died before that, there
    is no one to wait for: exit."""

    def __init__(self, cgroup_procs: str | None = None) -> None:
        self.parent = os.getpid()
        self.cgroup_procs = cgroup_procs

    def __call__(self) -> None:
        if self.cgroup_procs is not None:
            cgroups.join_in_child(self.cgroup_procs)
        if PRCTL is not None:  # the worker builds this only where there is a prctl
            zero = ctypes.c_ulong(0)
            PRCTL(_PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL), zero, zero, zero)
        if os.getppid() != self.parent:
            os._exit(1)


def subreaper_enabled() -> bool:
    """Whether this process adopts its orphaned descendants (asks the kernel)."""
    if PRCTL is None:
        return False
    flag = ctypes.c_int(0)
    zero = ctypes.c_ulong(0)
    if PRCTL(_PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), zero, zero, zero) != 0:
        return False
    return flag.value != 0


def children_pids(pid: int) -> list[int]:
    """The children of ``pid`` at this moment (adopted orphans included)."""
    return _children_reader()(pid)


def subtrees(roots: list[psutil.Process]) -> list[psutil.Process]:
    """``roots`` and every live descendant of theirs, each once."""
    children_of = _children_reader()
    return _subtrees(roots, lambda proc: processes(children_of(proc.pid), proc), lambda proc: proc.pid)


def cgroup_members(group: cgroups.Cgroup) -> list[psutil.Process]:
    """The processes in ``group`` (and below), each pinned by its create_time while
    the cgroup still lists it: a pid listed, then ended and reused outside, is not."""
    procs = processes(group.pids())
    still = set(group.pids())
    return [proc for proc in procs if proc.pid in still]


def descendant_pids(pid: int) -> list[int]:
    """Every descendant of ``pid`` at this moment (pids may be gone by the time
    they are used: check them with psutil)."""
    children_of = _children_reader()
    return [kid for kid in _subtrees(children_of(pid), children_of, int) if kid != pid]


_Node = typing.TypeVar("_Node")


def _subtrees(roots: list[_Node], children: Callable[[_Node], list[_Node]],
              pid: Callable[[_Node], int]) -> list[_Node]:
    """``roots`` and everything below them, each once."""
    found: list[_Node] = []
    stack, seen = list(roots), set()
    while stack:
        node = stack.pop()
        if pid(node) in seen:
            continue  # pids change hands while the files are read: no walking in circles
        seen.add(pid(node))
        found.append(node)
        stack.extend(children(node))
    return found


def alive(proc: psutil.Process) -> bool:
    """Running with the same create_time (so not a reused pid), and not a zombie."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:  # includes ZombieProcess
        return False


def _proc_children(pid: int) -> list[int]:
    """The pids of ``pid``'s children: each thread's file lists those it is parent of
    (the thread that forked them, or the one an orphan was handed to)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return []  # gone
    kids: list[int] = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as file:
                kids.extend(int(kid) for kid in file.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue  # that thread, or the whole process, ended meanwhile
    return kids


def _children_reader() -> Callable[[int], list[int]]:
    """How one scan finds the children of a pid."""
    if _PROC_CHILDREN:
        return _proc_children
    kids: dict[int | None, list[int]] = collections.defaultdict(list)
    for proc in psutil.process_iter(["ppid"]):
        kids[proc.info["ppid"]].append(proc.pid)
    return lambda pid: kids.get(pid, [])


def processes(pids: list[int], parent: psutil.Process | None = None) -> list[psutil.Process]:
    """``pids`` as processes, those that still exist; under ``parent`` only those not
    older than it: an older one got the pid of a child that ended meanwhile."""
    procs = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            if parent is None or proc.create_time() >= parent.create_time():
                procs.append(proc)
        except psutil.NoSuchProcess:  # includes ZombieProcess
            continue
    return procs


class Descendants:
    """The live descendants of the child whose environment carries ``token``,
    remembered from scan to scan."""

    def __init__(self, token: str):
        self._token = token
        self.leader: psutil.Process | None = None  # pins the child's pid by create_time
        self._seen: dict[int, psutil.Process] = {}
        # The child's own cgroup, if it has one: every process it forks, found or not.
        self.cgroup: cgroups.Cgroup | None = None

    def started(self, pid: int) -> None:
        """The child exists: from now on its pid and session lead to its tree."""
        try:
            self.leader = psutil.Process(pid)
        except psutil.NoSuchProcess:
            pass  # it exited and gevent reaped it while Popen waited for the exec

    def scan(self) -> list[psutil.Process]:
        """The child and all its descendants currently alive (zombies are gone)."""
        found = {proc.pid: proc for proc in self._walk()}
        if self.cgroup is not None:
            for proc in cgroup_members(self.cgroup):
                found.setdefault(proc.pid, proc)
        for pid, proc in self._seen.items():
            found.setdefault(pid, proc)  # e.g. re-parented to init: no subreaper
        me = os.getpid()
        self._seen = {pid: proc for pid, proc in found.items() if pid != me and alive(proc)}
        return list(self._seen.values())

    def _walk(self) -> list[psutil.Process]:
        """The subtrees of the worker's children that are ours: the child, and orphans
        of its tree re-parented to the worker."""
        roots = [proc for proc in processes(children_pids(os.getpid()), None) if self._is_ours(proc)]
        return subtrees(roots)

    def _is_ours(self, proc: psutil.Process) -> bool:
        if proc == self.leader or proc == self._seen.get(proc.pid):  # pid + create_time
            return True
        try:
            # The session id is the child's only while the child holds its pid.
            leader = self.leader
            if leader is not None and os.getsid(proc.pid) == leader.pid and leader.is_running():
                return True
            return proc.environ().get(TOKEN_VAR) == self._token
        except (ProcessLookupError, psutil.NoSuchProcess, psutil.AccessDenied):
            return False


def pids(procs: list[psutil.Process]) -> str:
    return ", ".join(str(proc.pid) for proc in procs)


def signal_all(procs: list[psutil.Process], sig: int, pgid: int | None = None,
               logger: logging.Logger = log) -> bool:
    """Send ``sig`` to the process group ``pgid`` (if any) and to every process in
    ``procs`` (they may have left the group); whether the group still had members.
    Signal 0 only checks."""
    group_alive = pgid is not None
    if pgid is not None:
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            group_alive = False
        except PermissionError as exc:  # a member we may not signal is still a member
            logger.warning("cannot signal process group %d: %s", pgid, exc)
    for proc in procs:
        try:
            proc.send_signal(sig)  # psutil refuses a reused pid (NoSuchProcess)
        except psutil.NoSuchProcess:
            pass  # gone already
        except psutil.AccessDenied as exc:
            logger.warning("cannot signal pid %d: %s", proc.pid, exc)
    return group_alive


@dataclasses.dataclass
class Left:
    """What is still alive of a tree: processes, or a process group still having members
    that no scan found (``pgid``)."""
    procs: list[psutil.Process]
    pgid: int | None = None

    def __bool__(self) -> bool:
        return bool(self.procs) or self.pgid is not None

    def __str__(self) -> str:
        return f"pids {pids(self.procs)}" if self.procs else f"process group {self.pgid}"


def _no_group(procs: list[psutil.Process]) -> int | None:
    return None


def stop(members: Callable[[], list[psutil.Process]], grace: float, *,
         first: list[psutil.Process] | None = None,
         group: Callable[[list[psutil.Process]], int | None] = _no_group,
         kill_all: Callable[[], None] | None = None,
         logger: logging.Logger = log, name: str = "processes") -> Left:
    """Stop a tree of processes: SIGTERM, up to ``grace`` seconds, then SIGKILL every
    round (a dying parent may still have forked) for up to ``KILL_TIMEOUT``; returns
    what survived.  ``members()`` looks at the tree afresh (``first`` is its first
    look, if the caller has it); ``group(procs)`` is a process group that is certainly
    still the tree's, signalled as a whole, or None; ``kill_all()``, if given, sends
    SIGKILL to the whole tree at once (a cgroup's), in every SIGKILL round.  Interrupted (killed, a timeout),
    it sends SIGKILL to everything before it lets the exception through: nothing may
    outlive the caller's interest in it.  Waits cooperatively (gevent)."""
    procs = members() if first is None else first
    signal_all(procs, signal.SIGTERM, group(procs), logger)
    try:
        left = _wait_gone(members, group, grace, logger)
        if left:
            logger.warning("%s: %s still alive %.1fs after SIGTERM, sending SIGKILL", name, left, grace)
            left = _wait_gone(members, group, KILL_TIMEOUT, logger, kill=True, kill_all=kill_all)
    except BaseException:
        if kill_all is not None:
            kill_all()
        procs = members()
        signal_all(procs, signal.SIGKILL, group(procs), logger)
        raise
    return left


def _wait_gone(members: Callable[[], list[psutil.Process]],
               group: Callable[[list[psutil.Process]], int | None], timeout: float,
               logger: logging.Logger, kill: bool = False,
               kill_all: Callable[[], None] | None = None) -> Left:
    """Poll until the tree is gone or ``timeout`` passes (SIGKILL each round if
    ``kill``, with ``kill_all`` too); what is left."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        if kill and kill_all is not None:
            kill_all()
        procs = members()
        pgid = group(procs)
        group_alive = signal_all(procs, signal.SIGKILL if kill else 0, pgid, logger)
        if not procs and not group_alive:
            return Left([])
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return Left(procs, pgid if group_alive else None)
        gevent.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.2)


def exit_at_once(why: str, code: int = 130) -> typing.NoReturn:
    """Log ``why``, kill every descendant of this process (nothing it started may
    outlive it) and exit with ``code`` now, with no clean-up and no waiting: for an
    operator who will not wait."""
    log.warning("%s", why)
    signal_all(processes(descendant_pids(os.getpid())), signal.SIGKILL)
    os._exit(code)
