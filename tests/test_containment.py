"""fworker.containment and fworker.cgroups: the processes of a task, found without
catching them in a scan, with real processes.  Each test runs with the cgroup (where this
machine allows one) and without (the adopted-orphan fallback)."""
import os
import subprocess

import gevent
import pytest

import fworker  # noqa: F401  (monkey-patches first)
from fworker import cgroups, containment, leftovers, proctree
from fworker.process import ChildProcess
from fworker.proctree import enable_subreaper
from tests.support.procs import double_fork, escapees, keep_running, kill_marked, marked, new_marker, sleeper
from tests.support.waiting import wait_until

CGROUP = containment._parent_directory() is not None
MODES = [pytest.param(True, id="cgroup", marks=pytest.mark.skipif(not CGROUP, reason=containment.mechanism())),
         pytest.param(False, id="adopted-orphans")]
DEADLINE = 20


@pytest.fixture
def marker():
    mark = new_marker("contain")
    try:
        yield mark
    finally:
        kill_marked(mark)


def scope(use_cgroup, **kwargs):
    assert enable_subreaper()
    return containment.TaskScope("test", use_cgroup=use_cgroup, grace=0.5, **kwargs)


def escapee(marker):
    (proc,) = wait_until(lambda: escapees(marker), DEADLINE, what="the double-forked sleeper")
    wait_until(lambda: proc.ppid() == os.getpid(), DEADLINE, what="the sleeper adopted by this process")
    return proc


@pytest.mark.parametrize("use_cgroup", MODES)
def test_a_child_ends_though_an_escaped_process_holds_its_output_and_the_task_stops_it(marker, use_cgroup):
    lines = []
    with scope(use_cgroup) as task:
        child = ChildProcess(double_fork(marker), on_lines=lines.extend, grace=0.5)
        child.linger = 0.3
        runner = gevent.spawn(child.run)
        proc = escapee(marker)
        assert proc.environ() == {}, "env -i: no token, no owner mark"
        assert proc in task.members(), "the task's, though no scan of the child's tree finds it"
        # Before: run() waited for the end of the output for ever.
        assert runner.get(timeout=DEADLINE) == 0
        assert lines == ["spawned"]
    wait_until(lambda: not marked(marker), DEADLINE, what="nothing of the task left")
    assert containment.current() is None


@pytest.mark.parametrize("use_cgroup", MODES)
def test_abort_stops_reading_output_that_an_unfound_process_holds_open(marker, use_cgroup, monkeypatch):
    # Without a scope, nothing finds the sleeper: abort() stops what it finds, and
    # reading the output ends after a bounded drain instead of waiting for its end.
    if use_cgroup:
        task = scope(True).open()
    child = ChildProcess(double_fork(marker, then=keep_running(marker)), on_lines=lambda lines: None, grace=0.5)
    runner = gevent.spawn(child.run)
    try:
        proc = escapee(marker)
        wait_until(lambda: escapees(marker, "main"), DEADLINE, what="the child running")
        child.abort()
        assert runner.get(timeout=DEADLINE) < 0, "the child was stopped"
        if use_cgroup:
            assert not proctree.alive(proc), "in the child's cgroup: stopped with its tree"
        else:
            assert proctree.alive(proc), "no scan found it (and the task stops it, see above)"
    finally:
        runner.kill()
        if use_cgroup:
            task.close()


@pytest.mark.parametrize("use_cgroup", MODES)
def test_what_was_running_before_the_task_or_is_excluded_is_not_the_tasks(marker, use_cgroup):
    bystander = subprocess.Popen(["sh", "-c", f"exec {sleeper(marker + '-bystander')}"])
    late = None
    try:
        with scope(use_cgroup) as task:
            # Started while the task runs, declared by its program as its own.
            late = subprocess.Popen(["sh", "-c", f"exec {sleeper(marker + '-late')}"])
            containment.exclude(late.pid)
            child = ChildProcess(["sh", "-c", f"{sleeper(marker + '-helper')} >/dev/null 2>&1 &"],
                                 on_lines=lambda lines: None)
            assert child.run() == 0
            (helper,) = wait_until(lambda: escapees(marker, "helper"), DEADLINE, what="the helper")
            assert helper in task.members()
            assert all(proc.pid != bystander.pid for proc in task.members())
        wait_until(lambda: not proctree.alive(helper), DEADLINE, what="the helper stopped at the task's end")
        assert bystander.poll() is None, "a child of this process from before the task was left alone"
        assert late.poll() is None, "an excluded child was left alone"
    finally:
        for proc in (bystander, late):
            if proc is not None:
                proc.kill()
                proc.wait()


@pytest.mark.skipif(not CGROUP, reason=containment.mechanism())
def test_a_child_starts_inside_its_own_cgroup_within_the_tasks(marker):
    with scope(True) as task:
        child = ChildProcess(double_fork(marker, then=keep_running(marker)), on_lines=lambda lines: None, grace=0.5)
        runner = gevent.spawn(child.run)
        try:
            proc = escapee(marker)
            assert task.cgroup.contains(proc.pid) and task.cgroup.contains(child.pid)
            with open(f"/proc/{proc.pid}/cgroup", encoding="ascii") as file:
                line = next(line for line in file.read().splitlines() if line.startswith("0::"))
            assert line.endswith(os.path.basename(task.cgroup.path) + "/c1")
        finally:
            runner.kill()
    assert not os.path.exists(task.cgroup.path), "the task's cgroup is removed at its end"


@pytest.mark.skipif(not CGROUP, reason=containment.mechanism())
def test_what_an_earlier_worker_process_left_in_its_cgroups_is_stopped(marker, tmp_path, monkeypatch):
    owner = leftovers.owner_mark(str(tmp_path / "queue.sqlite"))
    monkeypatch.setattr(leftovers, "_swept", {owner})
    # An earlier process of this worker (a pid that is not ours) and another worker.
    earlier = cgroups.Cgroup.make(containment._parent_directory(), f"{containment._prefix(owner)}1-t-x")
    other = cgroups.Cgroup.make(containment._parent_directory(), f"{containment._prefix(owner + 'x')}1-t-x")
    started = []
    try:
        for group in (earlier, other):
            proc = subprocess.Popen(["sh", "-c", f"exec env -i {sleeper(marker + '-left')}"])
            cgroups.move(proc.pid, group.procs_file)
            started.append(proc)
        assert leftovers.stop_leftovers(owner, grace=0.5) == []
        wait_until(lambda: started[0].poll() is not None, DEADLINE, what="the earlier process's leftover stopped")
        assert not os.path.exists(earlier.path)
        assert started[1].poll() is None, "another worker's cgroup is not ours"
    finally:
        for proc in started:
            proc.kill()
            proc.wait()
        for group in (earlier, other):
            wait_until(lambda group=group: not group.pids(), DEADLINE)
            group.remove()


def test_own_directory_from_proc_files(tmp_path):
    cgroup_file = tmp_path / "cgroup"
    mountinfo = tmp_path / "mountinfo"
    (tmp_path / "unified" / "svc").mkdir(parents=True)
    mountinfo.write_text(
        "30 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        f"35 25 0:31 / {tmp_path}/unified rw,relatime shared:9 - cgroup2 cgroup2 rw\n")
    cgroup_file.write_text("4:memory:/x\n0::/svc\n")
    assert cgroups.own_directory(str(cgroup_file), str(mountinfo)) == str(tmp_path / "unified" / "svc")
    cgroup_file.write_text("4:memory:/x\n")
    with pytest.raises(cgroups.Unavailable, match="cgroup v1 only"):
        cgroups.own_directory(str(cgroup_file), str(mountinfo))
    cgroup_file.write_text("0::/elsewhere\n")
    with pytest.raises(cgroups.Unavailable, match="no cgroup2 file system"):
        cgroups.own_directory(str(cgroup_file), str(mountinfo))


@pytest.mark.skipif(not CGROUP, reason=containment.mechanism())
def test_a_child_that_exited_before_its_cgroup_was_checked_is_not_said_to_have_missed_it(monkeypatch, caplog):
    # /bin/true often exits before the worker checks its cgroup: it is then in no
    # cgroup's list, having joined its own before exec; no warning, nothing moved.
    started = proctree.Descendants.started

    def exited_first(self, pid):
        started(self, pid)
        wait_until(lambda: self.leader is None or not proctree.alive(self.leader), DEADLINE,
                   what="the child to exit before its cgroup is checked")
    monkeypatch.setattr(proctree.Descendants, "started", exited_first)
    moved = []
    monkeypatch.setattr(cgroups, "move", lambda pid, procs_file: moved.append(pid))
    caplog.set_level("WARNING")
    with scope(True):
        assert ChildProcess(["/bin/true"], on_lines=lambda lines: None, grace=0.5).run() == 0
    assert moved == [], "an exited child is not moved into its cgroup"
    assert "cgroup" not in caplog.text
