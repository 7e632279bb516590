"""How long the event loop was blocked, measured by gevent's own monitor.

Everything the worker does shares one event loop: a greenlet that computes
for a second without yielding stops the flusher, the Manager polls, the
metrics server and signal handling for that second.  gevent's monitor thread
(``gevent.config.monitor_thread``; gevent's, not one of ours) wakes every
``max_blocking_time`` seconds and, when no greenlet switch happened in that
period, emits ``gevent.events.EventLoopBlocked``.  ``HubMonitor`` turns
those events into a duration: the block began before the monitor's previous
check (a function of ours the monitor thread runs right after its own check
records when that was), and it ended when the loop runs again, which a
callback handed to the loop from the monitor thread observes.  The duration
is thus a lower bound, short by less than one of the monitor's periods
(``PERIOD``, more when the machine is too loaded for the monitor thread to
wake on time); a block longer than two periods is always noticed.

The monitor is always on in a running worker: it costs one wake-up of a
sleeping thread every ``PERIOD``, and a worker that stops answering is what
an operator most needs to be able to see (``fworker_hub_blocked_max_seconds``,
and a warning in the log naming where the loop was stuck).
"""
from __future__ import annotations

import logging
import time
import typing

import gevent
import gevent.events

log = logging.getLogger(__name__)

# The monitor's period: blocks longer than twice this are always noticed.
PERIOD = 0.05

# A block at least this long is logged as a warning.
WARN_AFTER = 0.1


class HubMonitor:
    """Records the longest block of the current thread's event loop in
    ``stats.hub_blocked_max_seconds`` (and ``blocked_max``), and warns about
    each block over ``warn_after`` seconds."""

    def __init__(self, stats: typing.Any = None, *, period: float = PERIOD, warn_after: float = WARN_AFTER):
        self.stats = stats
        self.period = period
        self.warn_after = warn_after
        self.blocked_max = 0.0
        self.blocks = 0  # how many blocks were noticed
        self._hub = gevent.get_hub()
        # Written by the monitor thread, read by the loop after the block: plain
        # assignments, which the GIL keeps whole.
        self._since: float | None = None
        self._where = ""
        self._checked_at: float | None = None  # the monitor's last check

    def start(self) -> HubMonitor:
        gevent.config.monitor_thread = True
        gevent.config.max_blocking_time = self.period
        # The report goes to our log, once per block, not to stderr every period.
        gevent.config.print_blocking_reports = False
        if self._on_event not in gevent.events.subscribers:
            gevent.events.subscribers.append(self._on_event)
        thread = self._hub.start_periodic_monitoring_thread()
        if thread is None:
            log.warning("gevent's monitor thread could not be started: blocking of the event loop is not measured")
        else:
            # After gevent's check (added later, so run later in each round).
            thread.add_monitoring_function(self._checked, self.period)
        return self

    def stop(self) -> None:
        """Stop listening; gevent's monitor thread itself stays (it is gevent's)."""
        if self._on_event in gevent.events.subscribers:
            gevent.events.subscribers.remove(self._on_event)
        thread = self._hub.periodic_monitoring_thread
        if thread is not None:
            # None removes it (gevent's documented use, which its stubs do not know).
            thread.add_monitoring_function(self._checked, None)  # type: ignore[arg-type]

    def _checked(self, _hub: typing.Any) -> None:
        """In gevent's monitor thread, right after each of its checks."""
        self._checked_at = time.perf_counter()

    def _on_event(self, event: typing.Any) -> None:
        """In gevent's monitor thread: nothing here may log, lock or switch."""
        if not isinstance(event, gevent.events.EventLoopBlocked) or event.hub is not self._hub:
            return
        if self._since is not None:
            return  # the same block, noticed again
        self._where = _blocked_frame(event.info)
        # No switch since the previous check: the block began before it.
        previous = self._checked_at
        self._since = previous if previous is not None else time.perf_counter() - event.blocking_time
        self._hub.loop.run_callback_threadsafe(self._resumed)

    def _resumed(self) -> None:
        """In the loop, as soon as it runs again."""
        since, self._since = self._since, None
        if since is None:
            return
        blocked = time.perf_counter() - since
        self.blocks += 1
        if blocked > self.blocked_max:
            self.blocked_max = blocked
            if self.stats is not None:
                self.stats.hub_blocked_max_seconds = blocked
        if blocked >= self.warn_after:
            log.warning("the event loop was blocked for %.3f s (nothing else ran meanwhile) at %s",
                        blocked, self._where or "an unknown place")


def _blocked_frame(report: typing.Sequence[str]) -> str:
    """The innermost frame of the blocked stack in gevent's report, one line."""
    for index, line in enumerate(report):
        if line.startswith("Blocked Stack") and index + 1 < len(report):
            frames = [frame.strip() for frame in report[index + 1].split("\n  File ") if frame.strip()]
            return " ".join(frames[-1].split()) if frames else ""
    return ""
