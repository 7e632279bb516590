"""The SQLite outbox (how the flusher coalesces it: test_coalesce.py)."""
import json
import os
import sqlite3
import subprocess
import sys

from fworker.queue import UpdateQueue

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
