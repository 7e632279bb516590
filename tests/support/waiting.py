"""The one way tests wait for something: poll a condition against a deadline, never a
fixed sleep ("long enough" is either too long or, on a loaded machine, too short).
The benchmark harness (bench/common.py) waits with it too."""
from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, what: str | Callable[[], str] | None = None,
               interval: float = 0.02) -> T:
    """Poll ``predicate`` every ``interval`` seconds until it returns something truthy,
    and return that.  After ``timeout`` seconds raise AssertionError naming ``what``
    (a callable is called then, so the message can show the state at the failure;
    without it, the predicate's source).  Cooperative in tests: time.sleep is gevent's
    there (conftest imports fworker first, which monkey-patches), so other greenlets (an
    in-process Manager, a child's pump) run meanwhile; in the benchmark harness, which
    never imports fworker, it is the plain one its threads need."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            described = what() if callable(what) else what or _describe(predicate)
            raise AssertionError(f"timed out after {timeout:g} s waiting for {described}")
        time.sleep(interval)


def _describe(predicate: Callable) -> str:
    """The predicate's source if it can be found, else its name."""
    try:
        return inspect.getsource(predicate).strip()
    except (OSError, TypeError):
        return getattr(predicate, "__qualname__", repr(predicate))
