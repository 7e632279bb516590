"""The one way tests wait for something: poll a condition against a deadline, never a
fixed sleep ("long enough" is either too long or, on a loaded machine, too short)."""
from __future__ import annotations

import time
from typing import Callable, TypeVar

import gevent

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, what: str | Callable[[], str],
               interval: float = 0.02) -> T:
    """Poll ``predicate`` every ``interval`` seconds until it returns something truthy,
    and return that.  After ``timeout`` seconds raise AssertionError naming ``what``
    (a callable is called then, so the message can show the state at the failure).
    Cooperative: other greenlets (an in-process Manager, a child's pump) run meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            described = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout:g} s waiting for {described}")
        gevent.sleep(interval)
