"""The error state: a worker whose pre-task checks fail (``fworker.pretask``) takes no
task until a later check passes.  Meanwhile it keeps talking to the Manager (the
worker's loop polls for status changes), so it can still be put to sleep or shut down.
"""
from __future__ import annotations

import logging
import time

import gevent

from fworker import config, pretask
from fworker.states import State, StateMachine

log = logging.getLogger(__name__)


class PreTaskGate:
    """Runs the pre-task checks and moves ``machine`` into ``error`` when they fail,
    back to ``working`` when they pass again (every ``pre_task_check_interval``)."""

    def __init__(self, settings: config.Settings, machine: StateMachine, working: State):
        self._settings = settings
        self._machine = machine
        self._working = working
        self._recheck_at = 0.0  # monotonic time of the next check while in error

    def passes(self) -> bool:
        """Before asking for a task: whether all is well (else the state is now error)."""
        found = self._problems()
        if found:
            log.error("pre-task check failed, taking no task: %s", "; ".join(found))
            self._recheck_at = time.monotonic() + self._settings.pre_task_check_interval
            self._machine.change(State.ERROR, "pre-task check failed")
        return not found

    def recovered(self) -> bool:
        """In error: check again if it is time; whether the worker is back to work."""
        if time.monotonic() < self._recheck_at:
            return False
        found = self._problems()
        if not found:
            self._machine.change(self._working, "pre-task check passes again")
            return True
        log.warning("pre-task check still fails: %s", "; ".join(found))
        self._recheck_at = time.monotonic() + self._settings.pre_task_check_interval
        return False

    def _problems(self) -> list[str]:
        # In the thread pool: a hung network mount must not freeze the hub.
        return gevent.get_hub().threadpool.apply(pretask.check, (self._settings,))
