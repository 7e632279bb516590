"""The worker's states and the one place where the state changes.

The states are the Manager's worker statuses (PROTOCOL.md section 3) that a
worker can be in, plus ``shutdown``.  ``StateMachine.change`` checks the
transition, logs old -> new, and calls ``on_change`` (which acknowledges the
new state to the Manager where the protocol says so).
"""
from __future__ import annotations

import enum
import logging
import typing

log = logging.getLogger(__name__)


class State(str, enum.Enum):
    STARTING = "starting"
    AWAKE = "awake"
    ASLEEP = "asleep"
    TESTING = "testing"
    ERROR = "error"
    SHUTDOWN = "shutdown"

    def __str__(self) -> str:
        return self.value


ALLOWED: dict[State, frozenset[State]] = {
    State.STARTING: frozenset({State.AWAKE, State.ASLEEP, State.TESTING, State.ERROR, State.SHUTDOWN}),
    State.AWAKE: frozenset({State.ASLEEP, State.TESTING, State.ERROR, State.SHUTDOWN}),
    State.ASLEEP: frozenset({State.AWAKE, State.TESTING, State.ERROR, State.SHUTDOWN}),
    State.TESTING: frozenset({State.AWAKE, State.ASLEEP, State.ERROR, State.SHUTDOWN}),
    State.ERROR: frozenset({State.AWAKE, State.ASLEEP, State.TESTING, State.SHUTDOWN}),
    State.SHUTDOWN: frozenset(),
}

# States in which the worker asks the Manager for tasks.
WORKING = frozenset({State.AWAKE, State.TESTING})


def from_request(requested: str) -> State:
    """The state a Manager's status request asks for.  Anything we do not
    know (``error`` included) puts the worker to sleep: the safe choice."""
    if requested in (State.AWAKE, State.ASLEEP, State.SHUTDOWN, State.TESTING):
        return State(requested)
    return State.ASLEEP


class StateMachine:
    def __init__(self, on_change: typing.Callable[[State, State], None] | None = None):
        self.state = State.STARTING
        self._on_change = on_change

    def change(self, new: State, reason: str) -> bool:
        """Move to ``new``; False (and nothing happens) if it is the current
        state or not allowed from it."""
        old = self.state
        if new == old:
            return False
        if new not in ALLOWED[old]:
            log.warning("ignoring state change %s -> %s (%s): not allowed", old, new, reason)
            return False
        self.state = new
        log.info("worker state %s -> %s (%s)", old, new, reason)
        if self._on_change is not None:
            self._on_change(old, new)
        return True

    @property
    def working(self) -> bool:
        return self.state in WORKING
