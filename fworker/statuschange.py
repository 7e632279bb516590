"""Status requests from the Manager, whichever channel brings them.

The Manager asks a worker to change status in three ways (docs/PROTOCOL.md
§3.7): a ``423`` answer to ``POST /task``, the ``status_requested`` of a
may-i-run answer, and ``GET /status-change``, which the worker polls while it
takes no work.  They all end up in ``StatusChanges.apply``, which moves the
state machine (that acknowledges) or starts a shutdown (never acknowledged:
the worker signs off instead).
"""
from __future__ import annotations

import logging
import typing

from fworker.edge.base import Edge
from fworker.errors import RetryLater
from fworker.states import State, StateMachine, from_request
from fworker.upstream import Answer

log = logging.getLogger(__name__)


class StatusChanges:
    """Owns the worker's StateMachine and the Manager's side of it.

    ``on_shutdown(reason)`` is called when the Manager asks for a shutdown;
    the worker then stops as on SIGTERM, except that it gives a running task
    back instead of failing it.
    """

    def __init__(self, upstream: Edge, *, on_shutdown: typing.Callable[[str], None],
                 on_change: typing.Callable[[State, State], None] | None = None):
        self.upstream = upstream
        self.on_shutdown = on_shutdown
        self.machine = StateMachine(self.acknowledge, on_change)
        self._noted: set[str] = set()

    def apply(self, requested: typing.Any, source: str) -> bool:
        """Act on a status request; False if it was malformed (ignored)."""
        if not isinstance(requested, str) or not requested:
            log.warning("%s sent a malformed status request %r; ignoring it", source, requested)
            return False
        new = from_request(requested)
        reason = f"requested by {source}"
        if new is State.SHUTDOWN:
            self.machine.change(State.SHUTDOWN, reason)
            self.on_shutdown(f"{source} asked for shutdown")
            return True
        if new.value == requested:
            self._noted.clear()  # a new round of requests: say again what is odd in it
        else:
            self._note_once(f"unknown:{requested}", logging.WARNING,
                            "%s asked for status %r, which this worker does not have; going to sleep instead",
                            source, requested)
        self.machine.change(new, reason, asked=new.value == requested)
        return True

    def apply_answer(self, body: typing.Any, source: str) -> bool:
        """Act on the ``status_requested`` of an answer's body (a 423 to POST
        /task, a 200 to the status poll); False if it has none or a malformed one."""
        return self.apply(body.get("status_requested") if isinstance(body, dict) else None, source)

    def note_lazy(self, requested: typing.Any) -> None:
        """A request that waits for the running task to finish (may-i-run
        said yes): it is applied when the next POST /task answers 423."""
        self._note_once(f"lazy:{requested}", logging.INFO,
                        "the Manager asks for status %r once the running task is done", requested)

    def poll(self) -> tuple[Answer, bool]:
        """``GET /status-change`` once and apply what it asks for.  Returns the
        answer (the caller judges what is not 200 or 204) and whether it was
        applied (a 200 asking for a status); RetryLater when the Manager cannot
        be reached."""
        answer = self.upstream.status_change()
        return answer, answer.status == 200 and self.apply_answer(answer.body, "Manager (status-change poll)")

    def acknowledge(self, status: str) -> bool:
        """``POST /ack-status-change/<status>``; True if the Manager took it."""
        try:
            answer = self.upstream.ack_status_change(status)
        except RetryLater as ex:
            log.warning("could not acknowledge status %s (will again later): %s", status, ex)
            return False
        if answer.status != 204:
            log.warning("acknowledging status %s: Manager answered %d %s", status, answer.status,
                        answer.text.strip()[:200])
            return False
        log.debug("acknowledged status %s", status)
        return True

    def _note_once(self, key: str, level: int, msg: str, *args: typing.Any) -> None:
        # The Manager repeats a pending request on every poll; say it once.
        if key not in self._noted:
            self._noted.add(key)
            log.log(level, msg, *args)
