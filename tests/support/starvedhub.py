"""Children for tests/test_hubmonitor.py (not a test module), the role first,
the caller's marker last (it names the process; unused here).

``hub CPU NICE WANTED DEADLINE``: an event loop that never blocks, on a thread
the machine starves of CPU.  Only the loop's thread is pinned to CPU and
lowered to NICE, after gevent's monitor thread has started (a thread takes
both from the thread that starts it): the ``hog`` processes the caller pins to
the same CPU then take it from the loop for long stretches, while the monitor
keeps checking on time, as on a loaded machine.  The only greenlet reads
/dev/zero (a system call that lets the monitor take the GIL, as the worker's
I/O does) and yields every few microseconds, so any block the monitor sees is
the thread waiting for a CPU.  It stops at the first block at least WANTED
seconds long, or after DEADLINE seconds, and prints one JSON line.

``hog CPU SECONDS``: computes on CPU until told to stop, SECONDS at most (so
that none outlives a test that died).

``unstarted``: starts the monitor before anything started the event loop,
blocks it, and prints one JSON line once the block is measured.
"""
from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402

from fworker import hubmonitor  # noqa: E402

os_sleep = monkey.get_original("time", "sleep")


def starved_hub(cpu: int, nice: int, wanted: float, deadline: float) -> None:
    monitor = hubmonitor.HubMonitor(period=0.02, warn_after=3600).start()
    loop_thread = threading.get_native_id()
    everywhere = os.sched_getaffinity(loop_thread)
    os.sched_setaffinity(loop_thread, {cpu})
    os.setpriority(os.PRIO_PROCESS, loop_thread, nice)  # Linux: a thread's id names that thread only
    give_up = time.monotonic() + deadline
    with open("/dev/zero", "rb", buffering=0) as zeros:
        while monitor.blocked_max < wanted and time.monotonic() < give_up:
            zeros.read(1 << 16)
            gevent.sleep(0)
    monitor.stop()
    os.sched_setaffinity(loop_thread, everywhere)  # to answer and exit without waiting for the hogs
    report(monitor)


def hog(cpu: int, seconds: float) -> None:
    os.sched_setaffinity(0, {cpu})
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def unstarted() -> None:
    monitor = hubmonitor.HubMonitor(period=0.02, warn_after=3600).start()
    os_sleep(0.3)  # the loop is blocked for 0.3 s
    end = time.monotonic() + 30
    while not monitor.blocks and time.monotonic() < end:
        gevent.sleep(0.01)
    report(monitor)


def report(monitor: hubmonitor.HubMonitor) -> None:
    print(json.dumps({"blocked_max": monitor.blocked_max, "own_max": monitor.own_max,
                      "blocks": monitor.blocks, "known": monitor.waits.available}), flush=True)


if __name__ == "__main__":
    role, args = sys.argv[1], sys.argv[2:-1]
    if role == "hub":
        starved_hub(int(args[0]), int(args[1]), float(args[2]), float(args[3]))
    elif role == "hog":
        hog(int(args[0]), float(args[1]))
    elif role == "unstarted":
        unstarted()
    else:
        sys.exit(f"unknown role {role!r}")
