"""The durable outbox of task updates: a SQLite file, through ``dataset``.

Every update is committed here before anything is sent, so a render goes on
while the Manager is unreachable and nothing is lost when the worker dies.
Payloads are stored as JSON.  The flusher (``fworker.flusher``) reads from the
head, in insertion order, and deletes what the Manager accepted.

Each operation runs inside ``with self._db:`` so that dataset hands the
connection back when it is done: dataset keeps one connection per "thread",
which under gevent means per greenlet, and would otherwise run out of them.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import typing

import dataset
import gevent.event
import sqlalchemy.exc

from fworker.errors import RetryLater

log = logging.getLogger(__name__)


@dataclasses.dataclass
class QueuedUpdate:
    id: int
    task_id: str
    payload: dict


class UpdateQueue:
    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        folder = os.path.dirname(self.path)
        os.makedirs(folder, exist_ok=True)
        # synchronous=NORMAL under WAL: a commit survives a crash of the worker
        # process (SIGKILL); only a power loss may take the last commits.
        self._db = dataset.connect(
            f"sqlite:///{self.path}",
            on_connect_statements=["PRAGMA synchronous=NORMAL"],
        )
        # Schema changes outside a transaction: dataset warns (rightly) otherwise.
        self._updates = self._db.create_table("task_updates", primary_id="id", primary_type=self._db.types.integer)
        self._updates.create_column("task_id", self._db.types.string(32))
        self._updates.create_column("payload", self._db.types.text)
        self._updates.create_column("queued_at", self._db.types.float)
        self._rejected = self._db.create_table("rejected_updates", primary_id="id", primary_type=self._db.types.integer)
        self._rejected.create_column("task_id", self._db.types.string(32))
        self._rejected.create_column("payload", self._db.types.text)
        self._rejected.create_column("answer", self._db.types.text)
        self._rejected.create_column("rejected_at", self._db.types.float)
        with self._db:
            self._depth = self._updates.count()
        # Set whenever something is queued, so the flusher wakes at once.
        self.pushed = gevent.event.Event()
        os.chmod(self.path, 0o600)

    def __len__(self) -> int:
        return self._depth

    def push(self, task_id: str, payload: dict) -> None:
        self.push_many([(task_id, payload)])

    def push_many(self, items: typing.Iterable[tuple[str, dict]]) -> None:
        rows = [{"task_id": task_id, "payload": json.dumps(payload, ensure_ascii=False),
                 "queued_at": time.time()} for task_id, payload in items]
        if not rows:
            return
        try:
            with self._db:
                self._updates.insert_many(rows)
        except sqlalchemy.exc.SQLAlchemyError as ex:
            raise RetryLater(f"cannot write to the update queue {self.path}: {ex}") from ex
        self._depth += len(rows)
        self.pushed.set()

    def head(self, limit: int = 100) -> list[QueuedUpdate]:
        with self._db:
            rows = list(self._updates.find(order_by="id", _limit=limit))
        return [QueuedUpdate(row["id"], row["task_id"], json.loads(row["payload"])) for row in rows]

    def delete(self, ids: list[int]) -> None:
        if not ids:
            return
        with self._db:
            self._updates.delete(id={"in": list(ids)})
        self._depth = max(0, self._depth - len(ids))

    def reject(self, item: QueuedUpdate, answer: str) -> None:
        """Move an update the Manager cannot decode out of the way, keeping it."""
        with self._db:
            self._rejected.insert({"task_id": item.task_id, "payload": json.dumps(item.payload),
                                   "answer": answer, "rejected_at": time.time()})
            self._updates.delete(id=item.id)
        self._depth = max(0, self._depth - 1)

    def rejected(self) -> list[dict]:
        with self._db:
            return [dict(row) for row in self._rejected.find(order_by="id")]

    def close(self) -> None:
        self._db.close()
