"""The owner-mark sweep before each task (fworker.leftovers)."""
import fworker  # noqa: F401  (monkey-patches first)

# isort: split

import logging
import os
import signal
import subprocess
import sys

import psutil

from fworker import leftovers, proctree
from fworker.proctree import enable_subreaper
from tests.support.waiting import wait_until

# Starts a grandchild in its own session and exits: the grandchild is an orphan,
# re-parented to the nearest subreaper, and prints its pid.
DAEMONIZE = """
import os, subprocess, sys, time
helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(helper.pid, flush=True)
"""


def test_after_the_first_sweep_only_the_workers_descendants_are_searched(tmp_path, monkeypatch):
    assert enable_subreaper()
    owner = leftovers.owner_mark(str(tmp_path / "queue.sqlite"))
    monkeypatch.setattr(leftovers, "_swept", set())
    scans = []
    real_iter = psutil.process_iter
    monkeypatch.setattr(psutil, "process_iter", lambda *a, **k: scans.append(1) or real_iter(*a, **k))
    assert leftovers.stop_leftovers(owner) == []
    assert scans, "the first sweep looks at the whole machine (an earlier worker may have been killed)"

    env = dict(os.environ, **{leftovers.OWNER_VAR: owner})
    out = subprocess.run([sys.executable, "-c", DAEMONIZE], env=env, capture_output=True, text=True,
                         check=True, timeout=30).stdout
    orphan = psutil.Process(int(out.split()[0]))
    assert orphan.ppid() == os.getpid(), "re-parented to this process, the subreaper"
    scans.clear()
    try:
        assert leftovers.stop_leftovers(owner, grace=0.5) == []
        wait_until(lambda: not proctree.alive(orphan), 10, "the orphan stopped")
        assert not scans, "later sweeps walk this process's descendants only"
    finally:
        if orphan.is_running():
            orphan.kill()


def test_a_process_without_the_mark_is_left_alone(tmp_path, monkeypatch):
    assert enable_subreaper()
    owner = leftovers.owner_mark(str(tmp_path / "queue.sqlite"))
    monkeypatch.setattr(leftovers, "_swept", {owner})
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                             env=dict(os.environ, **{leftovers.OWNER_VAR: owner + "-another-worker"}))
    try:
        assert leftovers.stop_leftovers(owner, grace=0.5) == []
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_a_leftover_that_ignores_sigterm_gets_sigkill_after_the_grace_period(tmp_path, caplog):
    owner = leftovers.owner_mark(str(tmp_path / "queue.sqlite"))
    stubborn = subprocess.Popen(
        [sys.executable, "-c", ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                "print('ready', flush=True); time.sleep(120)")],
        env=dict(os.environ, **{leftovers.OWNER_VAR: owner}), stdout=subprocess.PIPE, text=True)
    try:
        assert stubborn.stdout.readline().strip() == "ready"  # SIGTERM is ignored from now on
        with caplog.at_level(logging.WARNING, logger="fworker.leftovers"):
            assert leftovers.stop_leftovers(owner, grace=0.2) == []
        assert stubborn.wait(timeout=10) == -signal.SIGKILL
        assert f"leftovers: pids {stubborn.pid} still alive 0.2s after SIGTERM, sending SIGKILL" in caplog.text
    finally:
        stubborn.kill()
        stubborn.wait()
        stubborn.stdout.close()
