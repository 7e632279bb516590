"""fworker.hubmonitor: gevent's monitor thread measures how long the loop was blocked,
and how much of that was the worker's own (not waiting for a CPU)."""
import json
import logging
import os
import subprocess
import threading
import time

import gevent
import pytest
from gevent import monkey
from prometheus_client import generate_latest

from fworker import hubmonitor, metrics
from tests.support.procs import PY, kill_marked, new_marker
from tests.support.waiting import wait_until

# The real sleep: it blocks the whole thread, as a greenlet that never yields does.
os_sleep = monkey.get_original("time", "sleep")


def test_a_deliberate_block_is_measured_and_warned_about(caplog):
    stats = metrics.Stats()
    monitor = hubmonitor.HubMonitor(stats, period=0.02, warn_after=0.1).start()
    try:
        with caplog.at_level(logging.WARNING, logger="fworker.hubmonitor"):
            gevent.sleep(0)
            os_sleep(0.6)  # the loop is blocked for 0.6 s
            # Other blocks may be noticed too on a loaded machine: this one is the longest.
            wait_until(lambda: monitor.blocked_max >= 0.3, 10, lambda: f"the block ({monitor.blocked_max})")
        # A lower bound, short by the time between two of the monitor's checks:
        # one period (0.02 s) when its thread wakes on time; a loaded machine adds some.
        assert monitor.blocked_max >= 0.3
        assert stats.hub_blocked_max_seconds == monitor.blocked_max
        # Sleeping is not waiting for a CPU: the block is the worker's own (less the
        # waits for a CPU that ended within it, on a loaded machine: 0.3 s of margin).
        assert 0.3 <= monitor.own_max <= monitor.blocked_max
        assert stats.hub_blocked_own_max_seconds == monitor.own_max
        warnings = [r.getMessage() for r in caplog.records if r.name == "fworker.hubmonitor"]
        # Where: the blocked frame; and the own part.
        assert [w for w in warnings if "the event loop was blocked for" in w and "os_sleep(0.6)" in w], warnings
        own = "of it the worker's own" if monitor.waits.available else "is not known here"
        assert [w for w in warnings if own in w], warnings
    finally:
        monitor.stop()


def test_the_longest_block_is_kept_and_short_blocks_are_not_warned_about(caplog):
    stats = metrics.Stats()
    monitor = hubmonitor.HubMonitor(stats, period=0.02, warn_after=10).start()
    try:
        with caplog.at_level(logging.WARNING, logger="fworker.hubmonitor"):
            gevent.sleep(0)
            os_sleep(0.3)
            wait_until(lambda: monitor.own_max >= 0.2, 10, "the first block to be noticed")
            longest, noticed = monitor.own_max, monitor.blocks
            os_sleep(0.1)
            wait_until(lambda: monitor.blocks > noticed, 10, "the second block to be noticed")
        # The own parts: on a loaded machine the wall-clock length of the shorter
        # block can pass the longer one's (waiting for a CPU), its own part cannot.
        assert monitor.own_max == longest == stats.hub_blocked_own_max_seconds
        assert stats.hub_blocked_max_seconds == monitor.blocked_max >= longest
        assert not [r for r in caplog.records if r.name == "fworker.hubmonitor"]
    finally:
        monitor.stop()


def test_stopped_monitor_records_nothing():
    monitor = hubmonitor.HubMonitor(metrics.Stats(), period=0.02).start()
    monitor.stop()
    os_sleep(0.2)
    probe = hubmonitor.HubMonitor(period=0.02).start()  # a second one, still listening, to know when
    try:
        os_sleep(0.2)
        wait_until(lambda: probe.blocks, 10, "the probe to notice the block")
        assert monitor.blocks == 0 and monitor.blocked_max == 0
    finally:
        probe.stop()


def test_a_busy_loop_in_the_hub_is_its_own_block():
    monitor = hubmonitor.HubMonitor(period=0.02).start()
    try:
        gevent.sleep(0)
        # 0.4 s of this thread's CPU time, however long a loaded machine makes it take.
        start = time.thread_time()
        while time.thread_time() - start < 0.4:
            pass
        wait_until(lambda: monitor.blocked_max >= 0.3, 10, lambda: f"the block ({monitor.blocked_max})")
        # The own part is at least the CPU time spent blocking, less what the
        # block's lower bound misses at its start (a period or so, as above);
        # a wait for a CPU in the middle (a loaded machine) is all it leaves out.
        assert 0.3 <= monitor.own_max <= monitor.blocked_max
    finally:
        monitor.stop()


def test_the_run_queue_wait_of_this_thread_is_read():
    waits = hubmonitor.RunQueueWait(threading.get_native_id())
    if not waits.available:
        pytest.skip(f"no run-queue wait on this system: {waits.why}")
    first = waits.read()
    assert first is not None and first >= 0
    second = waits.read()
    assert second is not None and second >= first  # a running total


@pytest.mark.parametrize("content", [None, "0 0 0\n", "garbage\n"], ids=["missing", "zeros", "garbage"])
def test_without_the_run_queue_wait_the_own_part_is_the_whole_block(tmp_path, monkeypatch, caplog, content):
    # A kernel without schedstat cannot be had here: its file is put elsewhere.
    path = tmp_path / "schedstat"
    if content is not None:
        path.write_text(content)
    monkeypatch.setattr(hubmonitor, "SCHEDSTAT", str(path))
    stats = metrics.Stats()
    with caplog.at_level(logging.INFO, logger="fworker.hubmonitor"):
        monitor = hubmonitor.HubMonitor(stats, period=0.02, warn_after=0.1).start()
        try:
            assert not monitor.waits.available and str(path) in monitor.waits.why
            gevent.sleep(0)
            os_sleep(0.3)
            wait_until(lambda: monitor.blocked_max >= 0.2, 10, lambda: f"the block ({monitor.blocked_max})")
        finally:
            monitor.stop()
    assert monitor.own_max == monitor.blocked_max == stats.hub_blocked_own_max_seconds
    messages = [r.getMessage() for r in caplog.records if r.name == "fworker.hubmonitor"]
    assert [m for m in messages if "include time the machine ran something else" in m], messages
    assert [m for m in messages if "blocked for" in m and "is not known here" in m], messages


def test_a_monitor_started_before_the_loop_ran_still_measures():
    # gevent's monitor thread ends for good if its first check finds the hub
    # not started; a fresh process is the only place a hub has not run yet.
    marker = new_marker("hubmonitor-unstarted")
    try:
        done = subprocess.run([PY, "-m", "tests.support.starvedhub", "unstarted", marker],
                              capture_output=True, text=True, timeout=120, check=True)
    finally:
        kill_marked(marker)
    measured = json.loads(done.stdout)
    assert measured["blocks"] >= 1 and measured["blocked_max"] >= 0.2, (measured, done.stderr)


@pytest.mark.slow
def test_a_hub_starved_of_cpu_is_not_its_own_block():
    if not hubmonitor.RunQueueWait(threading.get_native_id()).available or not hasattr(os, "sched_setaffinity"):
        pytest.skip("needs Linux's per-thread run-queue wait and CPU affinity")
    cpu = max(os.sched_getaffinity(0))
    marker = new_marker("hubmonitor-starved")
    module = [PY, "-m", "tests.support.starvedhub"]
    # Two busy processes on the CPU the loop's thread keeps to, at the lowest
    # priority: it waits for that CPU for long stretches (about 1.5 % of it is
    # its share), without ever blocking its loop.
    hogs = [subprocess.Popen([*module, "hog", str(cpu), "120", marker]) for _ in range(2)]
    try:
        child = subprocess.Popen([*module, "hub", str(cpu), "19", "0.15", "60", marker],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = child.communicate(timeout=120)
    finally:
        for process in hogs:
            process.kill()
            process.wait()
        kill_marked(marker)
    assert child.returncode == 0, err
    measured = json.loads(out)
    assert measured["known"]
    # The child stops at the first block of 0.15 s (7 periods): without one in
    # 60 s the hogs did not starve it and the test proves nothing.
    assert measured["blocked_max"] >= 0.15, measured
    # Timing is the behaviour here, so a bound with a wide margin: the own
    # part of a starved loop is the GIL passing to the monitor and the loop's
    # first steps once it runs again (measured: 0-6 ms); half the block is
    # far above that and far below what a block of the worker's own gives.
    assert measured["own_max"] < measured["blocked_max"] / 2, measured


def test_the_metrics_are_exported():
    stats = metrics.Stats()
    stats.hub_blocked_max_seconds = 0.25
    stats.hub_blocked_own_max_seconds = 0.125
    text = generate_latest(metrics.MetricsServer(stats).registry)
    assert b"fworker_hub_blocked_max_seconds 0.25" in text
    assert b"fworker_hub_blocked_own_max_seconds 0.125" in text
    assert b"# HELP fworker_hub_blocked_own_max_seconds" in text and b"waiting for a CPU" in text
