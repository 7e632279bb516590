"""Hostile task settings against the real worker process and the development
Manager: a huge command line, a NUL, a lone surrogate.  Each fails its task
with a clear error naming the setting, and the worker goes on working."""
import logging
import signal
import sys
import urllib.request

import pytest

from fworker.commands import base
from fworker.errors import CommandFailed
from tests.support.jobs import echo, job, task
from tests.support.waiting import wait_until
from tests.support.workers import free_port

HUGE = 10 * 1024 * 1024

pytestmark = pytest.mark.slow  # the real worker process


def status(m, task_id):
    return m.task(task_id)["status"]


def metric(port, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_a_10_mb_command_line_fails_its_task_and_the_worker_stays_responsive(manager, worker_process):
    port = free_port()
    ids = manager.submit_job(job(task("t0", [{"name": "exec", "settings": {"cmd": "x" * HUGE}}]),
                                 task("t1", [echo("still here")])))
    huge_task, next_task = ids["task_ids"]
    w = worker_process(manager.url, settings={"metrics_port": port})
    wait_until(lambda: status(manager, huge_task) == "failed", timeout=60)
    activity = manager.task(huge_task)["activity"]
    assert "setting 'cmd' is 10485760 characters long" in activity and "at most 1048576" in activity, activity
    # The worker took and ran the next task, and answers the metrics server and SIGTERM.
    wait_until(lambda: status(manager, next_task) == "completed", timeout=60)
    assert "still here" in manager.task_log(next_task)
    blocked = metric(port, "fworker_hub_blocked_max_seconds")
    print(f"hub blocked max: {blocked:.3f} s", file=sys.stderr)
    w.send(signal.SIGTERM)
    assert w.wait() == 0
    assert "x" * 1000 not in w.output  # the setting is quoted cut, not whole


def test_a_10_mb_command_line_of_tiny_arguments_runs_outside_the_loop(manager, worker_process):
    """Under the size limit but costly to split (~1 µs per argument): split in
    gevent's thread pool, then refused as more than exec allows."""
    port = free_port()
    ids = manager.submit_job(job(task("t0", [{"name": "exec", "settings": {"cmd": "a " * (512 * 1024 - 1)}}]),
                                 task("t1", [echo("next")])))
    big_task, next_task = ids["task_ids"]
    w = worker_process(manager.url, settings={"metrics_port": port})
    wait_until(lambda: status(manager, next_task) == "completed", timeout=60)
    activity = manager.task(big_task)["activity"]
    assert "setting 'cmd' has 524287 arguments taking" in activity, activity
    print(f"hub blocked max: {metric(port, 'fworker_hub_blocked_max_seconds'):.3f} s", file=sys.stderr)
    w.send(signal.SIGTERM)
    assert w.wait() == 0


def test_a_nul_in_a_command_line_is_a_setting_error(manager, worker_process):
    ids = manager.submit_job(job(task("t0", [{"name": "exec", "settings": {"cmd": "/bin/echo a\0b"}}]),
                                 task("t1", [{"name": "exec", "settings": {"cmd": "/bin/ech\0o"}}])))
    w = worker_process(manager.url)
    for task_id in ids["task_ids"]:
        wait_until(lambda task_id=task_id: status(manager, task_id) == "failed", timeout=60)
        activity = manager.task(task_id)["activity"]
        assert "command 'exec': setting 'cmd' contains a NUL character" in activity, activity
        assert "internal error" not in activity
    w.send(signal.SIGTERM)
    assert w.wait() == 0


def test_a_lone_surrogate_in_a_setting_reaches_the_manager_replaced(manager, worker_process):
    ids = manager.submit_job(job(task("t0", [echo("half \ud800 a pair")]), task("t1", [echo("next")])))
    w = worker_process(manager.url)
    for task_id in ids["task_ids"]:
        wait_until(lambda task_id=task_id: status(manager, task_id) == "completed", timeout=60)
    assert "half \ufffd a pair" in manager.task_log(ids["task_ids"][0])
    w.send(signal.SIGTERM)
    assert w.wait() == 0



def test_a_nul_in_any_argument_fails_the_command_clearly(recorder):
    """Settings other than command lines (a file path...) become arguments too."""
    ctx = base.CommandContext(recorder, logging.getLogger("test.nul"))
    with pytest.raises(CommandFailed,
                       match=r"cannot run echo: its command line has an argument \(number 2\) with a NUL"):
        ctx.run_process(["/bin/echo", "out\0put.png"])
