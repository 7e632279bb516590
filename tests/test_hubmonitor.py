"""fworker.hubmonitor: gevent's monitor thread measures how long the loop was blocked."""
import logging

import gevent
from gevent import monkey
from prometheus_client import generate_latest

from fworker import hubmonitor, metrics
from tests.support.waiting import wait_until

# The real sleep: it blocks the whole thread, as a greenlet that never yields does.
os_sleep = monkey.get_original("time", "sleep")


def test_a_deliberate_block_is_measured_and_warned_about(caplog):
    stats = metrics.Stats()
    monitor = hubmonitor.HubMonitor(stats, period=0.02, warn_after=0.1).start()
    try:
        with caplog.at_level(logging.WARNING, logger="fworker.hubmonitor"):
            gevent.sleep(0)
            os_sleep(0.4)  # the loop is blocked for 0.4 s
            # Other blocks may be noticed too on a loaded machine: this one is the longest.
            wait_until(lambda: monitor.blocked_max >= 0.3, 10, lambda: f"the block ({monitor.blocked_max})")
        # A lower bound, short by the time between two of the monitor's checks:
        # one period (0.02 s) when its thread wakes on time; a loaded machine adds some.
        assert monitor.blocked_max >= 0.3
        assert stats.hub_blocked_max_seconds == monitor.blocked_max
        warnings = [r.getMessage() for r in caplog.records if r.name == "fworker.hubmonitor"]
        # Where: the blocked frame.
        assert [w for w in warnings if "the event loop was blocked for" in w and "os_sleep(0.4)" in w], warnings
    finally:
        monitor.stop()


def test_the_longest_block_is_kept_and_short_blocks_are_not_warned_about(caplog):
    stats = metrics.Stats()
    monitor = hubmonitor.HubMonitor(stats, period=0.02, warn_after=10).start()
    try:
        with caplog.at_level(logging.WARNING, logger="fworker.hubmonitor"):
            gevent.sleep(0)
            os_sleep(0.3)
            wait_until(lambda: monitor.blocked_max >= 0.2, 10, "the first block to be noticed")
            longest, noticed = monitor.blocked_max, monitor.blocks
            os_sleep(0.1)
            wait_until(lambda: monitor.blocks > noticed, 10, "the second block to be noticed")
        assert monitor.blocked_max == longest == stats.hub_blocked_max_seconds
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


def test_the_metric_is_exported():
    stats = metrics.Stats()
    stats.hub_blocked_max_seconds = 0.25
    assert b"fworker_hub_blocked_max_seconds 0.25" in generate_latest(metrics.MetricsServer(stats).registry)
