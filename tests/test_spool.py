"""The spool between a child's pipe and the handling of its output."""
import os
import random
import subprocess
import sys

from fworker import spool as spool_module
from fworker.spool import Spool
from tests.support.waiting import wait_until


def drain(spool, size=7):
    out = []
    while True:
        data = spool.get(size)
        if not data:
            return b"".join(out)
        out.append(data)


def test_everything_comes_back_in_order_through_memory_and_file(tmp_path):
    spool = Spool(directory=str(tmp_path), memory_limit=50, limit=10_000)
    rng = random.Random(7)
    sent, got = [], []
    for round_ in range(200):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        spool.put(data)
        sent.append(data)
        if round_ % 3 == 0:
            got.append(spool.get(rng.randrange(1, 60)))
    got.append(drain(spool))
    assert b"".join(got) == b"".join(sent)
    assert len(spool) == 0 and spool.get(10) == b""


def test_a_burst_beyond_memory_goes_to_an_unlinked_file_whose_space_is_given_back(tmp_path):
    spool = Spool(directory=str(tmp_path), memory_limit=1000, limit=10**9)
    block = os.urandom(100_000)
    for _ in range(20):
        spool.put(block)
    assert len(spool) == 2_000_000 and spool._memory_size <= 1000
    assert os.listdir(tmp_path) == []  # unlinked: nothing left if the worker dies
    assert os.fstat(spool._file.fileno()).st_size >= 1_900_000
    assert drain(spool, 65536) == block * 20
    assert os.fstat(spool._file.fileno()).st_size == 0
    spool.close()


def test_full_at_the_limit():
    spool = Spool(memory_limit=10, limit=25)
    spool.put(b"x" * 20)
    assert not spool.full()
    spool.put(b"x" * 5)
    assert spool.full()
    spool.get(10)
    assert not spool.full()


def test_a_file_that_cannot_be_written_keeps_data_in_memory_and_reports_full(tmp_path, caplog):
    spool = Spool(directory=str(tmp_path / "not-a-dir"), memory_limit=10, limit=10**6)
    (tmp_path / "not-a-dir").write_text("a file where the spool's folder should be")
    spool.put(b"a" * 8)
    spool.put(b"b" * 8)  # beyond memory: the file cannot be made
    assert spool.write_failed and spool.full()
    assert "cannot spool child output to disk" in caplog.text
    assert drain(spool) == b"a" * 8 + b"b" * 8
    assert not spool.full()


def test_fill_reads_what_the_pipe_holds_without_waiting_and_sees_the_end():
    # A child's stdout, as in the worker.  Not os.pipe() closed here: once the hub
    # exists, gevent (>= 25.8.1, monkey-patched os.close) defers closing a pipe to
    # the loop's next turn, and a test that never yields would never see the end.
    child = subprocess.Popen([sys.executable, "-c", ("import os, sys; os.write(1, b'a' * 1000); "
                               "sys.stdin.read(); os.write(1, b'b' * 1000)")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    fd = child.stdout.fileno()
    os.set_blocking(fd, False)
    spool = Spool(memory_limit=10**6, limit=10**6)
    try:
        wait_until(lambda: spool.fill(fd)[1] or len(spool), 10, "the first write")
        assert spool.fill(fd) == (False, 0)  # nothing more yet: no wait
        child.stdin.close()  # the child writes the rest and exits
        ends = []
        wait_until(lambda: ends.append(spool.fill(fd)[0]) or ends[-1], 10, "the end of output")
        assert drain(spool, 65536) == b"a" * 1000 + b"b" * 1000
    finally:
        child.kill()
        child.wait()
        child.stdout.close()


def test_fill_stops_when_full():
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    spool = Spool(memory_limit=10, limit=10)
    try:
        os.write(write_end, b"x" * 100)
        spool.fill(read_end)
        assert spool.full()
        assert spool.fill(read_end) == (False, 0)
    finally:
        os.close(read_end)
        os.close(write_end)


def test_the_file_keeps_a_reserve_of_free_disk_for_the_queue(tmp_path, monkeypatch):
    monkeypatch.setattr(spool_module, "DISK_RESERVE", 2**62)  # more than any disk has free
    spool = Spool(directory=str(tmp_path), memory_limit=10, limit=10**6)
    spool.put(b"a" * 8)
    spool.put(b"b" * 8)
    assert spool.write_failed and spool.full()
    assert drain(spool) == b"a" * 8 + b"b" * 8


def test_fill_reads_at_most_fill_max_per_call(monkeypatch):
    monkeypatch.setattr(spool_module, "FILL_MAX", 10)
    monkeypatch.setattr(spool_module, "PIPE_SIZE", 4)
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    spool = Spool(memory_limit=10**6, limit=10**6)
    try:
        os.write(write_end, b"x" * 100)
        assert spool.fill(read_end) == (False, 12)
    finally:
        os.close(read_end)
        os.close(write_end)


def test_what_comes_out_carries_the_time_it_was_put(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(spool_module.time, "time", lambda: clock[0])
    spool = Spool(memory_limit=10, limit=10_000)
    assert spool.read_at is None
    for data in (b"aaaa", b"bbbbbbbb", b"cc"):  # to memory, to the file, to memory
        spool.put(data)
        clock[0] += 1
    assert (spool.get(3), spool.read_at) == (b"aaa", 1000.0)
    assert (spool.get(3), spool.read_at) == (b"a", 1000.0)  # memory and file pieces never join
    assert (spool.get(5), spool.read_at) == (b"bbbbb", 1001.0)
    assert (spool.get(100), spool.read_at) == (b"bbb", 1001.0)
    assert (spool.get(100), spool.read_at) == (b"cc", 1002.0)
    assert (spool.get(100), spool.read_at) == (b"", 1002.0)  # nothing new: unchanged
