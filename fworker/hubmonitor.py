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

A block so measured is wall-clock time: what a client of the worker
waited.  On a loaded machine part of it may not be the worker's doing: the
loop's thread was runnable but the kernel ran something else, and no greenlet
switched meanwhile.  Linux counts that wait per thread (the second field of
``/proc/self/task/<tid>/schedstat``, nanoseconds); it is read at each of the
monitor's checks and again when the loop resumes, and the difference is taken
off the block to give its own part (``own``): what the worker's code held the
loop for, sleeping in a blocking call included.  The kernel adds a wait to
that count when the thread gets a CPU back, so a wait already under way at
the monitor's check is counted whole, its part before the check included:
the own part can err short by that part, never long.  Where the file is
missing or reads all zeros (another OS, a kernel without schedstat), the own
part is the whole block, and the log says so at the start.

The monitor is always on in a running worker: it costs one wake-up of a
sleeping thread every ``PERIOD`` and one read of that small file (about
4 microseconds), and a worker that stops answering is what an operator most
needs to be able to see (``fworker_hub_blocked_max_seconds`` and
``fworker_hub_blocked_own_max_seconds``, and a warning in the log naming where
the loop was stuck).
"""
from __future__ import annotations

import logging
import threading
import time
import typing

import gevent
import gevent.events

log = logging.getLogger(__name__)

# The monitor's period: blocks longer than twice this are always noticed.
PERIOD = 0.05

# A block at least this long is logged as a warning.
WARN_AFTER = 0.1

# Per-thread scheduler counters: time on a CPU, time runnable waiting for one
# (both nanoseconds), times scheduled.
SCHEDSTAT = "/proc/self/task/{tid}/schedstat"


class RunQueueWait:
    """Seconds a thread has so far spent runnable but waiting for a CPU, from
    Linux's schedstat; ``available`` is False where it cannot be read (then
    ``read()`` gives None)."""

    def __init__(self, tid: int):
        self.path = SCHEDSTAT.format(tid=tid)
        try:
            on_cpu, _waited = self._fields()
        except (OSError, ValueError) as ex:
            self.available, self.why = False, f"{self.path}: {ex}"
        else:
            # The thread asking has run, so zero here means the kernel does
            # not count (schedstat off), not that nothing was waited.
            self.available = on_cpu > 0
            self.why = "" if self.available else f"{self.path} reads all zeros"

    def read(self) -> float | None:
        if not self.available:
            return None
        try:
            return self._fields()[1] / 1e9
        except (OSError, ValueError):
            # The thread is gone or the file changed form: no own part for
            # this block rather than a wrong one.
            return None

    def _fields(self) -> tuple[int, int]:
        # A fresh open each time (~4 us): a descriptor kept open would need
        # closing while the monitor thread may be reading it.
        with open(self.path, "rb", buffering=0) as file:
            fields = file.read(256).split()
        if len(fields) < 2:
            raise ValueError(f"expected at least two fields, got {fields!r}")
        return int(fields[0]), int(fields[1])


class HubMonitor:
    """Records the longest block of the current thread's event loop in
    ``stats.hub_blocked_max_seconds`` (and ``blocked_max``), the longest own
    part of a block (without the time the thread waited for a CPU) in
    ``stats.hub_blocked_own_max_seconds`` (and ``own_max``), and warns about
    each block over ``warn_after`` seconds."""

    def __init__(self, stats: typing.Any = None, *, period: float = PERIOD, warn_after: float = WARN_AFTER):
        self.stats = stats
        self.period = period
        self.warn_after = warn_after
        self.blocked_max = 0.0
        self.own_max = 0.0
        self.blocks = 0  # how many blocks were noticed
        self._hub = gevent.get_hub()
        self.waits = RunQueueWait(threading.get_native_id())
        # Written by the monitor thread, read by the loop after the block: plain
        # assignments, which the GIL keeps whole.  Each is (perf_counter(),
        # the loop thread's run-queue wait) taken together.
        self._since: tuple[float, float | None] | None = None
        self._where = ""
        self._checked_at: tuple[float, float | None] | None = None  # the monitor's last check

    def start(self) -> HubMonitor:
        gevent.config.monitor_thread = True
        gevent.config.max_blocking_time = self.period
        # The report goes to our log, once per block, not to stderr every period.
        gevent.config.print_blocking_reports = False
        if self._on_event not in gevent.events.subscribers:
            gevent.events.subscribers.append(self._on_event)
        if not self._hub:
            # A greenlet is false until it has started: gevent's monitor thread
            # takes a hub not started yet at its first check for one gone, and
            # ends for good.  One switch starts it (we are not in the hub: it
            # has not run).
            gevent.sleep(0)
        thread = self._hub.start_periodic_monitoring_thread()
        if thread is None:
            log.warning("gevent's monitor thread could not be started: blocking of the event loop is not measured")
        else:
            if not self.waits.available:
                log.info("blocks of the event loop include time the machine ran something else (%s)",
                         self.waits.why)
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
        self._checked_at = (time.perf_counter(), self.waits.read())

    def _on_event(self, event: typing.Any) -> None:
        """In gevent's monitor thread: nothing here may log, lock or switch."""
        if not isinstance(event, gevent.events.EventLoopBlocked) or event.hub is not self._hub:
            return
        if self._since is not None:
            return  # the same block, noticed again
        self._where = _blocked_frame(event.info)
        # No switch since the previous check: the block began before it.
        previous = self._checked_at
        if previous is None:
            previous = (time.perf_counter() - event.blocking_time, self.waits.read())
        self._since = previous
        self._hub.loop.run_callback_threadsafe(self._resumed)

    def _resumed(self) -> None:
        """In the loop, as soon as it runs again."""
        since, self._since = self._since, None
        if since is None:
            return
        began, waited_before = since
        blocked = time.perf_counter() - began
        waited_after = self.waits.read()
        waited = 0.0
        if waited_before is not None and waited_after is not None:
            waited = min(max(waited_after - waited_before, 0.0), blocked)
        own = blocked - waited
        self.blocks += 1
        if blocked > self.blocked_max:
            self.blocked_max = blocked
            if self.stats is not None:
                self.stats.hub_blocked_max_seconds = blocked
        if own > self.own_max:
            self.own_max = own
            if self.stats is not None:
                self.stats.hub_blocked_own_max_seconds = own
        if blocked >= self.warn_after:
            log.warning("the event loop was blocked for %.3f s (nothing else ran meanwhile; %s) at %s",
                        blocked, self._own_part(own), self._where or "an unknown place")

    def _own_part(self, own: float) -> str:
        if not self.waits.available:
            return "whether the machine ran something else instead is not known here"
        return f"{own:.3f} s of it the worker's own, the rest waiting for a CPU"


def _blocked_frame(report: typing.Sequence[str]) -> str:
    """The innermost frame of the blocked stack in gevent's report, one line."""
    for index, line in enumerate(report):
        if line.startswith("Blocked Stack") and index + 1 < len(report):
            frames = [frame.strip() for frame in report[index + 1].split("\n  File ") if frame.strip()]
            return " ".join(frames[-1].split()) if frames else ""
    return ""
