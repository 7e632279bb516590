"""fworker.process: real child processes, their output, exit codes and abort of the tree."""
import fworker  # noqa: F401  (monkey-patches first)

# isort: split

import os
import signal
import sys
import textwrap
import time

import gevent
import gevent.subprocess
import psutil
import pytest

from fworker import process, proctree, spool
from fworker.lines import LineSplitter
from fworker.process import ChildProcess, describe_exit
from fworker.proctree import enable_subreaper
from tests.support.waiting import wait_until

PY = sys.executable


def gone(pid):
    """Dead: no such process, or a zombie nobody has reaped yet."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def py(code):
    return [PY, "-c", textwrap.dedent(code)]


def run_collect(args, **kwargs):
    lines = []
    returncode = ChildProcess(args, on_lines=lines.extend, **kwargs).run()
    return returncode, lines


# --- output -------------------------------------------------------------------------

def test_lines_in_order_with_every_line_ending_and_bad_utf8():
    code = r"""
        import sys
        out = sys.stdout.buffer
        out.write(b"one\ntwo\r\nthree\rfour\n\n")
        out.flush()
        out.write(b"caf\xc3\xa9 \xff\xfe ok\r\nFra:1 Sample 1/4\rFra:1 Sample 2/4\rlast")
    """
    returncode, lines = run_collect(py(code))
    assert returncode == 0
    assert lines == ["one", "two", "three", "four", "", "caf\u00e9 \ufffd\ufffd ok",
                     "Fra:1 Sample 1/4", "Fra:1 Sample 2/4", "last"]


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 64])
def test_splitter_gives_the_same_lines_whatever_the_chunking(chunk):
    data = "a\r\nb\rc\n\r\n\u00e9\u00e9\u00e9\u00e9\u00e9|xyzxyzxyz\r".encode() + b"\xffend"
    lines = []
    splitter = LineSplitter(lines.append, limit=4)
    for i in range(0, len(data), chunk):
        splitter.feed(data[i:i + chunk])
    splitter.close()
    # é is two bytes and a piece never splits one; the last piece ends right before
    # the \r, which adds no empty line.
    assert lines == ["a", "b", "c", "", "\u00e9\u00e9", "\u00e9\u00e9", "\u00e9|x",
                     "yzxy", "zxyz", "\ufffdend"]


def test_a_piece_ending_right_before_the_line_end_adds_no_empty_line():
    lines = []
    splitter = LineSplitter(lines.append, limit=4)
    for part in (b"abcd", b"efgh\r", b"\nnext\r"):
        splitter.feed(part)
    splitter.close()
    assert lines == ["abcd", "efgh", "next"]


def test_a_1mb_line_comes_in_pieces():
    code = "import sys; sys.stdout.buffer.write(b'y' * 1_000_000 + b'\\nnext\\n')"
    returncode, lines = run_collect(py(code), max_line_bytes=65536)
    assert returncode == 0
    assert lines[-1] == "next"
    assert all(len(piece) <= 65536 for piece in lines)
    assert len(lines) == 1 + -(-1_000_000 // 65536)
    assert "".join(lines[:-1]) == "y" * 1_000_000


@pytest.mark.slow
def test_50mb_of_output_neither_deadlocks_nor_starves_other_greenlets():
    received = [0, 0]  # lines, characters
    seen_by_ticker = []  # lines received so far, each time another greenlet got to run

    def ticker():
        while True:
            gevent.sleep(0.005)
            seen_by_ticker.append(received[0])

    def on_lines(lines):
        received[0] += len(lines)
        received[1] += sum(map(len, lines))

    ticking = gevent.spawn(ticker)
    code = "import sys; sys.stdout.buffer.write((b'x' * 1023 + b'\\n') * 51200)"
    returncode = ChildProcess(py(code), on_lines=on_lines).run()
    ticking.kill()
    assert returncode == 0
    assert received == [51200, 51200 * 1023]
    # The other greenlet ran again and again while the output was being read, not
    # only before the first line or after the last one.
    meanwhile = {count for count in seen_by_ticker if 0 < count < 51200}
    assert len(meanwhile) >= 3, f"the ticker ran at {sorted(set(seen_by_ticker))} lines"


def test_cwd_and_env_reach_the_child(tmp_path):
    code = "import os; print(os.getcwd()); print(os.environ['FWORKER_TEST'])"
    returncode, lines = run_collect(py(code), cwd=str(tmp_path), env={"FWORKER_TEST": "yes"})
    assert (returncode, lines) == (0, [str(tmp_path), "yes"])


# --- exit codes ----------------------------------------------------------------------

@pytest.mark.parametrize("code, returncode, description", [
    ("pass", 0, "exit code 0"),
    ("import sys; sys.exit(3)", 3, "exit code 3"),
    ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", -9, "signal 9 (SIGKILL)"),
    ("import os, signal; os.kill(os.getpid(), signal.SIGTERM)", -15, "signal 15 (SIGTERM)"),
])
def test_exit_codes_and_signals(code, returncode, description):
    assert run_collect(py(code))[0] == returncode
    assert describe_exit(returncode) == description


def test_describe_exit_of_an_unknown_signal():
    assert describe_exit(-200) == "signal 200"


# --- abort ---------------------------------------------------------------------------

TREE = r"""
import os, signal, subprocess, sys, time
role = sys.argv[1]

def spawn(*args):
    return subprocess.Popen([sys.executable, __file__, *args])

if role == "child":
    spawn("same-group")
    spawn("escaped")
    spawn("parent")
elif role == "escaped":
    os.setsid()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
elif role == "parent":
    spawn("orphan", str(os.getpid()))
    os.write(1, f"parent {os.getpid()}\n".encode())
    sys.exit(0)
elif role == "orphan":
    os.setsid()
    while os.getppid() == int(sys.argv[2]):  # report only once really orphaned
        time.sleep(0.01)
# One write() of less than PIPE_BUF bytes: the lines of the tree's processes do not mix.
os.write(1, f"{role} {os.getpid()} {os.getppid()}\n".encode())
time.sleep(60)
"""


@pytest.mark.slow
def test_killing_run_aborts_the_whole_tree_and_nothing_else(tmp_path):
    assert enable_subreaper()
    script = tmp_path / "tree.py"
    script.write_text(TREE)
    lines = []
    child = ChildProcess([PY, str(script), "child"], on_lines=lines.extend, grace=0.5)
    bystander = gevent.subprocess.Popen([PY, "-c", "import time; time.sleep(60)"])
    runner = gevent.spawn(child.run)
    try:
        roles = {"child", "same-group", "escaped", "parent", "orphan"}
        wait_until(lambda: {line.split()[0] for line in lines} == roles, 10,
                   lambda: f"every process ready ({lines})")
        pids = {line.split()[0]: int(line.split()[1]) for line in lines}
        orphan_ppid = int(next(line for line in lines if line.startswith("orphan")).split()[2])
        assert orphan_ppid == os.getpid(), "the subreaper adopted the orphan"
        alive = {role: pid for role, pid in pids.items() if role != "parent"}
        assert set(alive.values()) <= {proc.pid for proc in child.descendants()}

        runner.kill()  # waits until run() has aborted the tree and re-raised
        assert isinstance(runner.value, gevent.GreenletExit)
        for role, pid in alive.items():
            wait_until(lambda pid=pid: gone(pid), 2, f"{role} {pid} gone")
        # gevent's SIGCHLD handler reaps adopted orphans too: no zombies pile up.
        wait_until(lambda: not psutil.pid_exists(pids["orphan"]), 2, "orphan reaped")
        assert bystander.poll() is None, "an unrelated child of the worker was killed"
        child.abort()  # a second abort is harmless
    finally:
        runner.kill()  # when an assertion failed before, it still cleans up the tree
        bystander.kill()
        bystander.wait()


HIDE = r"""
import os, subprocess, sys, time
role = sys.argv[1]
if role == "child":
    subprocess.Popen([sys.executable, __file__, "parent"])
elif role == "parent":
    # Its own session and an empty environment (no token): once its parent is gone,
    # nothing but an earlier scan tells that it belongs to the child.
    subprocess.Popen([sys.executable, __file__, "hidden"], env={}, start_new_session=True)
os.write(1, f"{role} {os.getpid()}\n".encode())
time.sleep(60)
"""


@pytest.mark.parametrize("proc_children", [True, False], ids=["proc-children-files", "parent-map"])
def test_a_hidden_orphan_seen_by_an_earlier_scan_is_killed(tmp_path, monkeypatch, proc_children):
    """What the scans while the child runs are for; with the children files of /proc
    and with the map of every process's parent that replaces them elsewhere."""
    assert enable_subreaper()
    monkeypatch.setattr(proctree, "_PROC_CHILDREN", proc_children)
    script = tmp_path / "hide.py"
    script.write_text(HIDE)
    lines = []
    child = ChildProcess([PY, str(script), "child"], on_lines=lines.extend, grace=0.5)
    runner = gevent.spawn(child.run)
    try:
        wait_until(lambda: len(lines) == 3, 10, lambda: f"every process ready ({lines})")
        pids = {line.split()[0]: int(line.split()[1]) for line in lines}
        # The scan run() repeats every track_interval.
        assert set(pids.values()) <= {proc.pid for proc in child.descendants()}
        os.kill(pids["parent"], signal.SIGKILL)
        wait_until(lambda: psutil.Process(pids["hidden"]).ppid() == os.getpid(), 5, "the orphan adopted")
        assert pids["hidden"] in {proc.pid for proc in child.descendants()}

        runner.kill()
        for role in ("child", "hidden"):
            wait_until(lambda role=role: gone(pids[role]), 2, f"{role} {pids[role]} gone")
    finally:
        runner.kill()


def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period():
    lines = []
    code = """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(60)
    """
    child = ChildProcess(py(code), on_lines=lines.extend, grace=0.5)
    runner = gevent.spawn(child.run)
    wait_until(lambda: lines == ["ready"], 5, "the child ready")
    started = time.monotonic()
    child.abort()
    assert time.monotonic() - started >= 0.45  # timing is the behaviour: it got its grace period (0.5 s)
    assert runner.get(timeout=5) == -signal.SIGKILL
    child.abort()
    assert gone(child.pid)


def test_abort_returns_as_soon_as_the_tree_is_gone():
    lines = []
    code = "import time; print('ready', flush=True); time.sleep(60)"
    child = ChildProcess(py(code), on_lines=lines.extend, grace=30)
    runner = gevent.spawn(child.run)
    wait_until(lambda: lines == ["ready"], 5, "the child ready")
    started = time.monotonic()
    child.abort()
    # Timing is the behaviour: abort() returns once the tree is gone, long before
    # the 30 s grace period would end (5 s: a wide margin for a loaded machine).
    assert time.monotonic() - started < 5
    assert runner.get(timeout=5) == -signal.SIGTERM


def test_on_lines_raising_aborts_the_child():
    def on_lines(lines):
        raise ValueError(lines[0])

    child = ChildProcess(py("import os, time; print(os.getpid(), flush=True); time.sleep(60)"),
                         on_lines=on_lines, grace=2)
    with pytest.raises(ValueError) as raised:
        child.run()
    assert int(str(raised.value)) == child.pid
    assert gone(child.pid)


def test_output_held_open_by_a_leftover_is_not_waited_for_forever():
    lines = []
    child = ChildProcess(["/bin/sh", "-c", "sleep 60 & echo $!"], on_lines=lines.extend, grace=1)
    child.linger = 0.3
    assert child.run() == 0
    wait_until(lambda: gone(int(lines[0])), 2, "leftover gone")


def test_abort_before_start_prevents_the_start():
    child = ChildProcess(py("pass"), on_lines=print)
    child.abort()
    child.abort()
    with pytest.raises(RuntimeError):
        child.run()
    assert child.pid is None


def test_killed_while_popen_waits_for_the_exec_the_child_is_still_stopped():
    child = ChildProcess(py("import time; time.sleep(60)"), on_lines=print, grace=2)
    runner = gevent.spawn(child.run)
    gevent.sleep(0)  # the runner is now inside start(), waiting for the exec
    assert child.pid is None
    runner.kill()
    assert child.pid is not None
    assert gone(child.pid)


def test_a_missing_program_raises_file_not_found():
    with pytest.raises(FileNotFoundError):
        ChildProcess(["/nonexistent/renderer"], on_lines=print).run()


def test_a_child_printing_faster_than_its_output_is_handled_is_not_held_back(tmp_path, monkeypatch):
    """Output waits in the spool (memory, then a file beside the queue), not in the
    child: it ends long before its lines are handled, and every line arrives,
    with the time it was read, not the time it was handled."""
    monkeypatch.setattr(spool, "MEMORY_LIMIT", 256 * 1024)
    lines, handled_when_child_ended, read_after_end_seen = [], [], []

    def slow_handler(batch):
        if handled_when_child_ended:
            read_after_end_seen.append(proc.read_at)
        elif proc._popen.poll() is not None:
            handled_when_child_ended.append(len(lines))
            end_seen_at.append(time.time())
        lines.extend(batch)
        gevent.sleep(0.005)  # stands in for the costly part: queue, JSON, HTTP

    end_seen_at = []

    code = "import os\nfor i in range(50000): os.write(1, b'%05d ' % i + b'x' * 94 + b'\\n')\n"
    proc = ChildProcess([sys.executable, "-c", code], on_lines=slow_handler, spool_dir=str(tmp_path))
    proc.linger = 0.1  # the pipe closed long before the spool is handled: that is no leftover
    assert proc.run() == 0
    assert lines == [f"{i:05d} " + "x" * 94 for i in range(50_000)]
    # 5 MB printed; the pipe holds 1 MiB: most of it was still to be handled.
    assert handled_when_child_ended and handled_when_child_ended[0] < 20_000
    # The next chunks were read long before the end was seen: they carry that time.
    assert read_after_end_seen[0] < end_seen_at[0]
    assert os.listdir(tmp_path) == []  # the spool file was never visible, and is gone
    assert not proc._stopping_leftovers


def test_an_abort_still_logs_what_was_spooled_up_to_a_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(process, "_ON_ABORT", 200_000)
    lines = []

    def slow_handler(batch):
        lines.extend(batch)
        gevent.sleep(0.01)

    code = "import os\nfor i in range(50000): os.write(1, b'%05d ' % i + b'x' * 94 + b'\\n')\n"
    proc = ChildProcess([sys.executable, "-c", code], on_lines=slow_handler, spool_dir=str(tmp_path))
    runner = gevent.spawn(proc.run)
    wait_until(proc._eof.is_set, 30, "the child's output closed")
    before = len(lines)
    runner.kill()
    assert len(lines) >= before + 1500  # ~200 kB more: 2,000 lines of 100 bytes
    assert "bytes of output read but not handled before the abort, dropped" in lines[-1]
    expected = [f"{i:05d} " + "x" * 94 for i in range(len(lines) - 1)]
    assert lines[:-2] == expected[:-1]
    assert expected[-1].startswith(lines[-2])  # the limit may cut the last line short


def test_handling_leaves_the_cpu_to_a_child_flooding_its_output():
    clock = [0.0]
    pace = process._Pace(clock=lambda: clock[0])
    backlog = spool.Spool(memory_limit=10**9, limit=8 * process._FLOOD_BACKLOG)

    def output(size):  # ``size`` bytes read over one window
        clock[0] += process._FLOOD_HANDLE_EVERY
        pace.read(size)

    backlog.put(b"x" * (process._FLOOD_BACKLOG + 1))
    assert not pace.flooding(backlog, eof=False)  # a backlog, but nothing says output pours in
    output(int(process._FLOOD_RATE * process._FLOOD_HANDLE_EVERY) + 1)
    assert pace.flooding(backlog, eof=False)  # it does: the child keeps the CPU
    assert not pace.flooding(backlog, eof=True)  # it ended: catch up at full speed
    output(0)
    assert not pace.flooding(backlog, eof=False)  # it went quiet: catch up at full speed


def test_a_full_spool_is_handled_at_full_speed_until_half_empty():
    clock = [0.0]
    pace = process._Pace(clock=lambda: clock[0])
    backlog = spool.Spool(memory_limit=10**9, limit=8 * process._FLOOD_BACKLOG)
    clock[0] += process._FLOOD_HANDLE_EVERY
    pace.read(10 * process._FLOOD_RATE)  # pouring in
    backlog.put(b"x" * backlog.limit)
    assert backlog.full() and not pace.flooding(backlog, eof=False)  # the child waits for us
    backlog.get(process._CHUNK)
    assert not pace.flooding(backlog, eof=False)  # just below the limit: still full speed
    while len(backlog) > backlog.limit // 2:
        backlog.get(process._CHUNK)
    assert pace.flooding(backlog, eof=False)  # half empty: the child may have the CPU again
