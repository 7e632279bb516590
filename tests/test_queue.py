"""The SQLite outbox (how the flusher coalesces it: test_coalesce.py)."""
import json
import os
import sqlite3
import subprocess
import sys

import pytest

from fworker import queuespace
from fworker.queue import UpdateQueue
from tests.support.journal import JournaledQueue

T1 = "a" * 24
T2 = "b" * 24


def test_push_head_delete_in_order(tmp_path):
    q = UpdateQueue(str(tmp_path / "q.sqlite"))
    for i in range(5):
        q.push(T1, {"log": f"line {i}"})
    assert len(q) == 5
    head = q.head(3)
    assert [u.payload["log"] for u in head] == ["line 0", "line 1", "line 2"]
    q.delete([u.id for u in head])
    assert len(q) == 2
    assert [u.payload["log"] for u in q.head()] == ["line 3", "line 4"]


def test_payloads_are_json_not_pickle(tmp_path):
    path = tmp_path / "q.sqlite"
    q = UpdateQueue(str(path))
    q.push(T1, {"activity": "ünïcode", "task_progress_percentage": 5})
    q.close()
    row = sqlite3.connect(path).execute("SELECT task_id, payload FROM task_updates").fetchone()
    assert row[0] == T1
    assert json.loads(row[1]) == {"activity": "ünïcode", "task_progress_percentage": 5}


def test_log_text_is_stored_as_it_is_beside_the_json(tmp_path):
    path = tmp_path / "q.sqlite"
    q = UpdateQueue(str(path))
    q.push(T1, {"log": 'line "one"\nline two \u00e9', "activity": "x"})
    row = sqlite3.connect(path).execute("SELECT payload, log FROM task_updates").fetchone()
    assert json.loads(row[0]) == {"activity": "x"}
    assert row[1] == 'line "one"\nline two \u00e9'
    assert q.head()[0].payload == {"activity": "x", "log": 'line "one"\nline two \u00e9'}


def test_a_queue_from_before_the_log_column_is_read_in_order(tmp_path):
    path = tmp_path / "q.sqlite"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE task_updates "
                "(id INTEGER PRIMARY KEY, task_id VARCHAR(32), payload TEXT, queued_at FLOAT)")
    old.execute("INSERT INTO task_updates (task_id, payload, queued_at) VALUES (?, ?, 1.0)",
                (T1, json.dumps({"log": "old line", "activity": "old"})))
    old.commit()
    old.close()
    q = UpdateQueue(str(path))
    q.push(T1, {"log": "new line"})
    assert len(q) == 2
    assert [u.payload for u in q.head()] == [{"log": "old line", "activity": "old"}, {"log": "new line"}]


def test_queue_file_is_private(tmp_path):
    q = UpdateQueue(str(tmp_path / "sub" / "q.sqlite"))
    assert os.stat(q.path).st_mode & 0o777 == 0o600


def test_rejected_updates_are_kept_aside(tmp_path):
    q = UpdateQueue(str(tmp_path / "q.sqlite"))
    q.push(T1, {"log": "bad"})
    q.push(T1, {"log": "good"})
    q.reject(q.head(1)[0], "400 Unable to decode JSON")
    assert [u.payload for u in q.head()] == [{"log": "good"}]
    rejected = q.rejected()
    assert len(rejected) == 1 and rejected[0]["answer"] == "400 Unable to decode JSON"
    assert json.loads(rejected[0]["payload"]) == {"log": "bad"}


@pytest.mark.slow
def test_queue_survives_sigkill_of_the_writer(tmp_path):
    path = str(tmp_path / "q.sqlite")
    code = (
        "import fworker, os, signal\n"
        "from fworker.queue import UpdateQueue\n"
        f"q = UpdateQueue({path!r})\n"
        "for i in range(300):\n"
        f"    q.push({T1!r}, {{'log': 'line %d' % i}})\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert proc.returncode == -9
    q = UpdateQueue(path)
    assert len(q) == 300
    assert [u.payload["log"] for u in q.head(300)] == [f"line {i}" for i in range(300)]


def test_delete_takes_exactly_the_ids_given_consecutive_or_not(tmp_path):
    q = UpdateQueue(str(tmp_path / "q.sqlite"))
    q.push_many([(T1, {"log": f"line {i}"}) for i in range(1200)])
    ids = [u.id for u in q.head(1200)]
    q.delete(ids[10:20])  # a range
    q.delete(ids[0:2] + ids[4:5])  # not consecutive: 2 and 3 stay
    q.delete(ids[100:1200:2])  # more than one statement's worth
    left = [u.payload["log"] for u in q.head(2000)]
    assert left == [f"line {i}" for i in [2, 3] + list(range(5, 10)) + list(range(20, 100)) + list(range(101, 1200, 2))]
    assert len(q) == len(left)
    q.delete(ids[10:20] + ids[:1])  # already gone: the count stays right
    assert len(q) == len(left)
    q.close()
    assert len(UpdateQueue(str(tmp_path / "q.sqlite"))) == len(left)


def test_a_subclass_writes_through_dataset_in_the_same_transaction(tmp_path):
    path = tmp_path / "q.sqlite"
    q = JournaledQueue(str(path))
    q.push(T1, {"log": "one"})
    q.fail = True
    q.push(T1, {"log": "two"})  # the journal refuses it: the update is not on disk either
    assert q.write_error and len(q.memory) == 1
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT count(*) FROM task_updates").fetchone() == (1,)
    assert raw.execute("SELECT count(*) FROM journal").fetchone() == (1,)
    q.fail = False
    assert q.write_pending() and q.write_error is None
    q.push(T1, {"log": "three"})
    expected = [{"log": "one"}, {"log": "two"}, {"log": "three"}]
    assert [json.loads(p) for p, in raw.execute("SELECT payload FROM journal ORDER BY id")] == expected
    assert [u.payload for u in q.head()] == expected and len(q) == 3
    q.reject(q.head(1)[0], "400 no")
    assert [u.payload for u in q.head()] == expected[1:] and len(q.rejected()) == 1
    q.close()


def test_a_failed_commit_is_rolled_back_and_the_next_write_works(tmp_path):
    q = UpdateQueue(str(tmp_path / "q.sqlite"))
    q.push(T1, {"log": "one"})
    real = q._conn

    class FullDisk:  # COMMIT fails as on a full disk, leaving the transaction open
        def __getattr__(self, name):
            return getattr(real, name)

        def commit(self):
            raise sqlite3.OperationalError("database or disk is full")

    q._conn = FullDisk()
    q.push(T1, {"log": "two"})
    head = q.head()
    q.delete([head[0].id])
    assert not real.in_transaction and "disk is full" in q.write_error
    assert [u.payload["log"] for u in head] == ["one", "two"] and len(q) == 1
    q._conn = real
    assert q.write_pending() and [u.payload["log"] for u in q.head()] == ["two"] and len(q) == 1
    q.close()
    assert [u.payload["log"] for u in UpdateQueue(str(tmp_path / "q.sqlite")).head()] == ["two"]


def test_head_stops_at_max_bytes_but_always_gives_one(tmp_path):
    q = UpdateQueue(str(tmp_path / "q.sqlite"))
    for i in range(10):
        q.push(T1, {"log": str(i) * 1000})
    assert len(q.head(100)) == 10
    assert [u.payload["log"][0] for u in q.head(100, max_bytes=2500)] == ["0", "1", "2"]
    assert len(q.head(100, max_bytes=1)) == 1
    q.delete([u.id for u in q.head(4)])
    assert q.head(1, max_bytes=10**6)[0].payload["log"][0] == "4"


def test_lone_surrogates_are_stored_as_replacement_characters(tmp_path):
    """A task setting may carry a lone surrogate ("\\ud800" in its JSON); UTF-8
    cannot hold one, and a push must never raise."""
    path = tmp_path / "q.sqlite"
    q = UpdateQueue(str(path))
    q.push(T1, {"activity": "bad \ud800 setting", "log": "echo \udcff\n"})
    q.push(T1, {"activity": "fine \U0001F600"})
    assert [u.payload for u in q.head()] == [
        {"activity": "bad \ufffd setting", "log": "echo \ufffd\n"}, {"activity": "fine \U0001F600"}]
    q.close()
    rows = sqlite3.connect(path).execute("SELECT payload, log FROM task_updates ORDER BY id").fetchall()
    assert json.loads(rows[0][0]) == {"activity": "bad \ufffd setting"} and rows[0][1] == "echo \ufffd\n"


def test_emptying_the_queue_measures_the_file_only_once_enough_was_written_to_matter(tmp_path, monkeypatch):
    from fworker import queuespace

    measured = []
    real_size = queuespace._size
    monkeypatch.setattr(queuespace, "_size", lambda path: measured.append(path) or real_size(path))
    q = UpdateQueue(str(tmp_path / "q.sqlite"))
    try:
        assert len(measured) == 2, "measured once when opened: the file and its WAL"
        for i in range(300):  # a render's usual updates, each delivered at once
            q.push(T1, {"activity": f"frame {i}", "log": "a line of log\n" * 5})
            q.delete([u.id for u in q.head()])
        assert len(q) == 0 and len(measured) == 2, "no stat() after each delivery that empties the queue"
        q.push_many([(T1, {"log": "x" * 100_000})] * 10)  # 1 MB: could make the file pass RECLAIM_BYTES
        q.delete([u.id for u in q.head()])
        assert len(measured) == 4, "measured again once that much was written"
        assert q.file_size() < queuespace.RECLAIM_BYTES, "and left alone: below the threshold"
        q.push(T1, {"activity": "next"})
        q.delete([u.id for u in q.head()])
        assert len(measured) == 4
    finally:
        q.close()


def test_a_file_left_large_by_an_earlier_run_is_compacted_once_its_updates_are_delivered(tmp_path):
    path = str(tmp_path / "q.sqlite")
    q = UpdateQueue(path)
    for _ in range(9):
        q.push_many([(T1, {"log": "y" * 100_000})] * 10)  # 9 MB, undelivered when the worker stops
    q.close()
    q = UpdateQueue(path)
    try:
        assert q.file_size() > 9_000_000
        while len(q):
            q.delete([u.id for u in q.head(30)])
        assert q.file_size() < 2_000_000
    finally:
        q.close()


@pytest.mark.slow  # 50 MB written and compacted
def test_a_file_that_compacting_cannot_shrink_is_not_compacted_at_every_delivery(tmp_path, monkeypatch):
    """Rejected updates stay in the file: after one VACUUM that could not bring it
    under the threshold, the next ones wait until the file grew that much again."""
    vacuums = []
    real = queuespace._vacuum
    monkeypatch.setattr(queuespace, "_vacuum", lambda path: (vacuums.append(path), real(path)))
    q = UpdateQueue(str(tmp_path / "q.sqlite"))
    try:
        for n in range(12):
            q.push("t", {"log": "rejected " + "r" * 1_000_000})
            q.reject(q.head(1)[0], f"400 number {n}")
        assert len(q) == 0 and q.file_size() > queuespace.RECLAIM_BYTES
        for n in range(20):
            q.push("t", {"log": f"line {n}"})
            q.delete([u.id for u in q.head(10)])
        assert len(vacuums) == 1, "compacted once, not at every delivery that emptied the queue"
        assert len(q.rejected()) == 12
    finally:
        q.close()


def test_the_file_shrinks_once_a_flood_is_delivered(tmp_path):
    """Issue 15 case 11f: a log flood left the queue file at its largest for good."""
    q = UpdateQueue(str(tmp_path / "q.sqlite"))
    try:
        line = "flood " + "x" * 9_994 + "\n"
        for _ in range(50):
            q.push_many([("t", {"log": line * 10})] * 10)  # 1 MB a call
        assert q.file_size() > 50_000_000
        q.push("t", {"task_status": "active"})
        while len(q) > 1:
            q.delete([u.id for u in q.head(100)][: len(q) - 1])
        assert q.file_size() > 50_000_000, "not while an update still waits"
        (last,) = q.head(10)
        q.delete([last.id])
        assert len(q) == 0 and q.file_size() < 2_000_000
        q.push("t", {"task_status": "completed"})  # still a working queue
        assert [u.payload for u in q.head(10)] == [{"task_status": "completed"}]
    finally:
        q.close()
    reopened = UpdateQueue(str(tmp_path / "q.sqlite"))
    try:
        assert reopened.head(10)[0].payload == {"task_status": "completed"}
    finally:
        reopened.close()
