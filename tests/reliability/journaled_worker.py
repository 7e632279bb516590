"""``python journaled_worker.py ARGS``: the real worker (``python -m fworker ARGS``),
except that every update committed to its queue is also written to a ``journal``
table, in the same SQLite transaction.  The journal is never deleted from, so it
is exactly what the worker produced and committed, in order: what the reliability
tests compare with what the Manager received."""
import fworker  # noqa: F401  (monkey-patches first)

import json
import sys

from fworker import queue
from fworker.rows import decode_payload


class JournaledQueue(queue.UpdateQueue):
    def _open(self) -> None:
        super()._open()
        self._journal = self._db.create_table("journal", primary_id="id", primary_type=self._db.types.integer)
        self._journal.create_column("task_id", self._db.types.string(32))
        self._journal.create_column("payload", self._db.types.text)

    def _insert(self, rows: list[dict]) -> None:
        super()._insert(rows)
        self._journal.insert_many([{"task_id": row["task_id"], "payload": json.dumps(
            decode_payload(row["payload"], row["log"]), ensure_ascii=False)} for row in rows])


# Before fworker.worker is imported, so that it picks up the journaled queue.
queue.UpdateQueue = JournaledQueue

if __name__ == "__main__":
    from fworker.cli import main

    sys.exit(main())
