"""What a worker killed with SIGKILL leaves running, and how it is stopped.

A SIGKILLed worker runs no cleanup, and its renders live in their own sessions.
Two defences: on Linux every child asks for SIGKILL when the worker dies
(``PR_SET_PDEATHSIG``, set by ``proctree.DieWithParent`` between fork and exec); and
every child carries the worker's owner mark (``OWNER_VAR``, the worker's queue file) in
its environment, inherited by everything it starts, so ``stop_leftovers()`` can
find what survived (grandchildren do not get the parent-death signal) when the
worker starts its next task (``TaskRunner``), in the worker's own thread: on the
whole machine the first time, then among the worker's descendants only, and stops
it like any tree (``proctree.stop``).  Where tasks run in cgroups
(``fworker.containment``), what an earlier worker process left in its task cgroups is
stopped too, with or without the mark, and the cgroups are removed.
"""
from __future__ import annotations

import functools
import logging
import os

import psutil

from fworker import containment, proctree, statefiles, warmblender
from fworker.proctree import OWNER_VAR

log = logging.getLogger(__name__)


def owner_mark(queue_path: str) -> str:
    """The owner mark of a worker (named in fworker.statefiles): its queue
    file, which no two running workers share (the queue's lock sees to that)."""
    return statefiles.owner_mark(queue_path)


# Owners whose leftovers this process has looked for on the whole machine.
_swept: set[str] = set()


def find(owner: str, *, everywhere: bool = True) -> list[psutil.Process]:
    """Live processes carrying ``owner`` as their owner mark, this one and the worker's
    residents (its warm Blender, ``fworker.warmblender.is_resident``) excepted: on the
    whole machine, or only among this process's descendants."""
    me, found = os.getpid(), []
    candidates = psutil.process_iter() if everywhere else proctree.processes(proctree.descendant_pids(me))
    for proc in candidates:
        try:
            if proc.pid != me and proc.environ().get(OWNER_VAR) == owner and not warmblender.is_resident(proc):
                found.append(proc)
        except psutil.Error:  # gone, a zombie, or another user's: not ours to stop
            continue
    return found


def stop_leftovers(owner: str, grace: float = 2.0) -> list[str]:
    """Stop every process carrying ``owner`` as its owner mark.  Call it before a
    task's first command, in the hub's thread (it logs and sleeps cooperatively).
    Returns what could not be stopped, one sentence per process.

    The first call looks at every process on the machine (reading each one's
    environment: ~20 % of the worker's CPU per short task when done every
    time): an earlier worker process may have been SIGKILLed.  Later calls,
    while this process is a subreaper, look only at its descendants: whatever
    its own tasks leave behind is re-parented to it, not to init."""
    everywhere = owner not in _swept or not proctree.subreaper_enabled()
    survivors = _stop(find(owner, everywhere=everywhere), grace)
    survivors += _stop_cgroups(owner, grace)
    if not survivors:
        _swept.add(owner)  # else look everywhere again next time
    return [f"leftover process {proc.pid} ({_name(proc)}) of an earlier task survives SIGKILL"
            for proc in survivors]


def _stop_cgroups(owner: str, grace: float) -> list[psutil.Process]:
    """What is left in the task cgroups of an earlier process of this worker: those
    that dropped the owner mark too (``env -i``).  The cgroups are removed."""
    survivors = []
    for group in containment.stale_cgroups(owner):
        found = proctree.cgroup_members(group)
        if found:
            log.warning("stopping pids %s, left running in %s by an earlier worker process",
                        proctree.pids(found), group.path)
            survivors += proctree.stop(functools.partial(proctree.cgroup_members, group), grace, first=found,
                                       kill_all=group.kill, logger=log, name="leftovers").procs
        group.remove()
    return survivors


def _stop(found: list[psutil.Process], grace: float) -> list[psutil.Process]:
    if not found:
        return []
    log.warning("stopping pids %s, left running by an earlier task of this worker", proctree.pids(found))
    # Only those found: a scan of the whole machine again would cost too much.
    return proctree.stop(lambda: [proc for proc in found if proctree.alive(proc)], grace,
                         first=found, logger=log, name="leftovers").procs


def _name(proc: psutil.Process) -> str:
    try:
        return proc.name()
    except psutil.Error:
        return "?"
