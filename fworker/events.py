"""Events a worker announces, for embedding code and metrics.

Callbacks run synchronously in the greenlet that emits; one that raises is
logged and ignored, so a subscriber can never break the worker.  Events and
their keyword arguments:

- ``state_changed``: old, new (state names)
- ``task_started``: task_id, name
- ``command_started`` / ``command_finished``: task_id, index, name
- ``task_finished``: task_id, outcome (``completed``, ``failed``, ``returned``)
- ``update_delivered``: task_id, count (queued updates accepted in one request)
"""
from __future__ import annotations

import logging
import typing

log = logging.getLogger(__name__)

EVENTS = ("state_changed", "task_started", "command_started", "command_finished", "task_finished",
          "update_delivered")

Callback = typing.Callable[..., None]


class EventBus:
    def __init__(self) -> None:
        self._subscribers: dict[str, list[Callback]] = {name: [] for name in EVENTS}

    def subscribe(self, event: str, callback: Callback) -> None:
        """Call ``callback(event, **data)`` for ``event``, or for all events with ``"*"``."""
        names = EVENTS if event == "*" else (event,)
        for name in names:
            if name not in self._subscribers:
                raise ValueError(f"unknown event {name!r}; known: {', '.join(EVENTS)}")
            self._subscribers[name].append(callback)

    def unsubscribe(self, callback: Callback) -> None:
        for callbacks in self._subscribers.values():
            while callback in callbacks:
                callbacks.remove(callback)

    def emit(self, event: str, **data: typing.Any) -> None:
        for callback in list(self._subscribers[event]):
            try:
                callback(event, **data)
            except Exception:  # a subscriber's bug must not stop a render
                log.exception("event subscriber %r failed on %s", callback, event)
