"""When did we last hear from a worker, or get a ping for a task?

Durations are measured on the monotonic clock, which means nothing across
processes, so these clocks live in memory only.  After a restart every
worker and task starts with a full timeout of grace: an id seen for the first
time by :meth:`Liveness.expired` counts as heard from just then.  The wall
clock times shown to humans (``last_seen``, ``last_ping``) are in the Store.
"""
import time
import typing


class Liveness:
    """Monotonic last-heard times, keyed by worker or task id."""

    def __init__(self, clock: typing.Callable[[], float] = time.monotonic):
        self._clock = clock
        self._heard: dict[str, float] = {}

    def heard(self, key: str) -> None:
        self._heard[key] = self._clock()

    def forget(self, key: str) -> None:
        self._heard.pop(key, None)

    def expired(self, keys: typing.Iterable[str], timeout: float) -> list[str]:
        """The keys not heard from for more than timeout seconds."""
        now = self._clock()
        return [key for key in keys if now - self._heard.setdefault(key, now) > timeout]
