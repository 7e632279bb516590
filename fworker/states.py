"""The worker's states and the one place where the state changes.

The states are the Manager's worker statuses (docs/PROTOCOL.md §3.7) that a
worker can be in, plus ``shutdown``.  ``StateMachine.change`` checks the
transition, logs old -> new, and tells the Manager (``POST
/ack-status-change/<state>``) where the protocol says so: ``starting`` is
what sign-on already set, and ``shutdown`` is answered with a sign-off.
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
# States the Manager is told about with POST /ack-status-change/<state>.
ACKNOWLEDGED = frozenset({State.AWAKE, State.ASLEEP, State.TESTING, State.ERROR})
# What a Manager may ask for (docs/PROTOCOL.md §3.7); `error` and `testing`
# are states a worker puts itself in, never on request.
REQUESTABLE = frozenset({State.AWAKE, State.ASLEEP, State.SHUTDOWN})


def from_request(requested: str) -> State:
    """The state a Manager's status request asks for.  Anything else
    (``error`` included) puts the worker to sleep: the safe choice."""
    for state in REQUESTABLE:
        if requested == state.value:
            return state
    return State.ASLEEP


class StateMachine:
    """``acknowledge(status) -> bool`` tells the Manager (True: it heard);
    ``on_change(old, new)`` is told of every change, after the Manager."""

    def __init__(self, acknowledge: typing.Callable[[str], bool] | None = None,
                 on_change: typing.Callable[[State, State], None] | None = None):
        self.state = State.STARTING
        # The last state the Manager confirmed hearing; None after a failed ack.
        self.acknowledged: State | None = None
        self._acknowledge = acknowledge
        self._on_change = on_change

    def change(self, new: State, reason: str, *, asked: bool = False) -> bool:
        """Move to ``new``, log it and tell the Manager.  False when nothing
        changed: ``new`` is the current state, or not allowed from it.

        ``asked``: the Manager asked for exactly ``new``.  If the worker is
        already there it is acknowledged again, since the Manager keeps
        asking until it hears that very status.
        """
        old = self.state
        if new == old:
            if asked or self.acknowledged is not new:
                self._tell(new)
            return False
        if new not in ALLOWED[old]:
            log.warning("ignoring state change %s -> %s (%s): not allowed", old, new, reason)
            return False
        self.state = new
        log.info("worker state %s -> %s (%s)", old, new, reason)
        self._tell(new)
        if self._on_change is not None:
            self._on_change(old, new)
        return True

    def catch_up(self) -> None:
        """Acknowledge the current state again if the last attempt failed
        (the Manager was away when the state changed)."""
        if self.acknowledged is not self.state:
            self._tell(self.state)

    def _tell(self, state: State) -> None:
        if state not in ACKNOWLEDGED or self._acknowledge is None:
            return
        self.acknowledged = state if self._acknowledge(state.value) else None

    @property
    def working(self) -> bool:
        return self.state in WORKING
