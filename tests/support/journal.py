"""A queue that also writes every committed update to a ``journal`` table, in the same
SQLite transaction.  The journal is never deleted from, so it is exactly what the worker
produced and committed, in order: what the reliability tests compare with what the
Manager received.  ``journaled_worker.py`` runs the real worker with it."""
from __future__ import annotations

import json
import sqlite3

from fworker import queue
from fworker.rows import decode_payload


class JournaledQueue(queue.UpdateQueue):
    """``fail`` makes the journal's next write fail (a duplicate id), and with it the
    queue's transaction."""
    fail = False

    def _open(self) -> None:
        super()._open()
        self._journal = self._db.create_table("journal", primary_id="id", primary_type=self._db.types.integer)
        self._journal.create_column("task_id", self._db.types.string(32))
        self._journal.create_column("payload", self._db.types.text)

    def _insert(self, rows: list[dict]) -> None:
        super()._insert(rows)
        extra = [{"id": 1}] if self.fail else []
        self._journal.insert_many([{"task_id": row["task_id"], "payload": json.dumps(
            decode_payload(row["payload"], row["log"]), ensure_ascii=False)} for row in rows] + extra)


def journal(db_path) -> list[tuple[str, dict]]:
    """(task id, update) of every journaled update, in order."""
    with sqlite3.connect(db_path) as db:
        rows = db.execute("SELECT task_id, payload FROM journal ORDER BY id").fetchall()
    return [(task_id, json.loads(payload)) for task_id, payload in rows]


def queued(db_path) -> int:
    """Updates still in a worker's queue file (0 before it exists)."""
    try:
        with sqlite3.connect(db_path) as db:
            return db.execute("SELECT COUNT(*) FROM task_updates").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0
