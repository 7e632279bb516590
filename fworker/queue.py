"""The durable outbox of task updates: a SQLite file.

Every update is committed here before anything is sent, so a render goes on
while the Manager is unreachable and nothing is lost when the worker dies.
How an update is stored (JSON, and its log text beside it) is in
``fworker.rows``.  The flusher (``fworker.flusher``) reads from the head, in
insertion order, and deletes what the Manager accepted.

The queue owns one ``sqlite3`` connection (WAL, synchronous=NORMAL, no implicit
transactions: ``BEGIN`` and ``COMMIT`` are explicit).  The statements run for
every update (insert, read the head, delete) go to it directly: through
``dataset`` and SQLAlchemy one update cost ~8x as much.  ``dataset`` opens the file,
creates the schema and reads the rejected updates, on that same connection (its
engine is built on it): a subclass may write through ``dataset`` inside the
queue's transaction (the reliability tests journal every insert that way).
The runner greenlet pushes and the flusher greenlet reads and deletes on the
one connection: that is safe under gevent because a ``sqlite3`` call never
yields, and no transaction here spans a yield (no logging, no I/O of our own
between ``BEGIN`` and ``COMMIT``).

When the file cannot be written (a full disk, an I/O error, a read-only
mount), updates wait in memory (``fworker.overflow``), after everything on disk, and
the flusher sends them from there; ``write_pending()`` (the flusher calls it)
moves them to disk once writing works again.  ``len()`` counts them: the
worker takes no task while any update is unsent.  A push never raises: a
render never fails because its log cannot be stored.

One process at a time: the queue is opened under its lock
(``fworker.statelock``) and keeps it until ``close()``; a second process, or a
second queue object on the same file, gets ``AlreadyRunning``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sqlite3
import time
import typing

import dataset
import gevent.event
import sqlalchemy.exc
import sqlalchemy.pool

from fworker import statefiles
from fworker.errors import Fatal, RetryLater
from fworker.overflow import MEMORY_LIMIT, Overflow
from fworker.queuespace import RECLAIM_BYTES, QueueSpace
from fworker.rows import decode_payload, encode_row, row_size
from fworker.statelock import StateLock

log = logging.getLogger(__name__)

# What a failed write raises: "database or disk is full", "disk I/O error",
# "attempt to write a readonly database", "unable to open database file" are
# sqlite3.OperationalError, a damaged file sqlite3.DatabaseError; through
# dataset (the schema, a subclass's writes) the same come as SQLAlchemy errors.
WRITE_ERRORS = (sqlite3.DatabaseError, sqlalchemy.exc.SQLAlchemyError, OSError)

# Ids per DELETE statement: below SQLite's old limit of 999 bound parameters.
_DELETE_CHUNK = 500

_INSERT = ("INSERT INTO task_updates (task_id, payload, log, queued_at, dialect) "
           "VALUES (:task_id, :payload, :log, :queued_at, :dialect)")
# Rows of the Manager generation spoken now; rows from before the column are 2.x's.
_OURS = "coalesce(dialect, 'v2') = ?"
_HEAD = f"SELECT id, task_id, payload, log FROM task_updates WHERE {_OURS} ORDER BY id LIMIT ?"
_COUNT = f"SELECT count(*) FROM task_updates WHERE {_OURS}"
_OLDEST = f"SELECT queued_at FROM task_updates WHERE {_OURS} ORDER BY id LIMIT 1"
_REJECT = "INSERT INTO rejected_updates (task_id, payload, answer, rejected_at) VALUES (?, ?, ?, ?)"


@dataclasses.dataclass
class QueuedUpdate:
    id: int  # negative: waiting in memory, not on disk
    task_id: str
    payload: dict[str, typing.Any]


class UpdateQueue:
    def __init__(self, path: str, *, memory_limit: int | None = None, dialect: str = "v2"):
        self.path = os.path.abspath(path)
        # Before the file is touched: one process per queue (AlreadyRunning otherwise).
        self.lock = StateLock(statefiles.lock_path(self.path)).acquire()
        # The Manager generation whose updates this queue sends (fworker.edge):
        # rows of the other one stay, never sent to the wrong Manager.
        self.dialect = dialect
        try:
            self._open()
            self._depth: int = self._conn.execute(_COUNT, (dialect,)).fetchone()[0]
            os.chmod(self.path, 0o600)
            self._space = QueueSpace(self.path, self._conn)  # when an emptied queue is compacted
        except WRITE_ERRORS as ex:
            self.lock.release()
            raise Fatal(f"cannot open the update queue {self.path}: {ex}") from None
        self.memory = Overflow(self.path, MEMORY_LIMIT if memory_limit is None else memory_limit)
        self.write_error: str | None = None  # why the last write failed; None once writes work
        self._undeleted: set[int] = set()  # delivered, but deleting them failed
        # Set whenever something is queued, so the flusher wakes at once.
        self.pushed = gevent.event.Event()

    def _open(self) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        # isolation_level=None: no implicit BEGIN, each transaction is _transaction()'s.
        # check_same_thread stays on: the hub's greenlets share one thread, and a
        # call from gevent's thread pool would race them, so it had better fail.
        self._conn = sqlite3.connect(self.path, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # synchronous=NORMAL under WAL: a commit survives a crash of the worker
        # process (SIGKILL); only a power loss may take the last commits.
        self._conn.execute("PRAGMA synchronous=NORMAL")
        # dataset on this very connection rather than a pool of its own: a write
        # through it then joins the queue's open transaction instead of waiting
        # for that transaction's lock, and SQLAlchemy must not roll back what it
        # did not begin when it takes a connection back.
        self._db = dataset.connect(f"sqlite:///{self.path}", sqlite_wal_mode=False, engine_kwargs={
            "creator": lambda: self._conn, "poolclass": sqlalchemy.pool.StaticPool, "pool_reset_on_return": None})
        # Schema changes outside a transaction: dataset warns (rightly) otherwise.
        self._updates = self._db.create_table("task_updates", primary_id="id", primary_type=self._db.types.integer)
        self._updates.create_column("task_id", self._db.types.string(32))
        self._updates.create_column("payload", self._db.types.text)
        # Queues written before the log had a column of their own have it in the payload.
        self._updates.create_column("log", self._db.types.text)
        self._updates.create_column("queued_at", self._db.types.float)
        # Which Manager generation an update is for ("v2", "v3"); NULL in older files: 2.x.
        self._updates.create_column("dialect", self._db.types.string(8))
        self._rejected = self._db.create_table("rejected_updates", primary_id="id", primary_type=self._db.types.integer)
        self._rejected.create_column("task_id", self._db.types.string(32))
        self._rejected.create_column("payload", self._db.types.text)
        self._rejected.create_column("answer", self._db.types.text)
        self._rejected.create_column("rejected_at", self._db.types.float)

    @contextlib.contextmanager
    def _transaction(self) -> typing.Iterator[sqlite3.Connection]:
        """BEGIN ... COMMIT on the queue's connection, rolled back if anything in
        it fails, the COMMIT included: a full disk fails the COMMIT and leaves
        the transaction open, which would make every later BEGIN fail too."""
        if self._conn.in_transaction:  # an earlier ROLLBACK failed too: try again, or BEGIN fails
            self._rollback()
        try:
            self._conn.execute("BEGIN")
            yield self._conn
            # A no-op when a write through dataset (which commits after each
            # write outside its own transactions) has committed it already.
            self._conn.commit()
        finally:
            if self._conn.in_transaction:
                self._rollback()

    def _rollback(self) -> None:
        try:
            self._conn.rollback()
        except WRITE_ERRORS as ex:
            log.debug("rolling back after a failed write of %s: %s", self.path, ex)

    def __len__(self) -> int:
        return self._depth - len(self._undeleted) + len(self.memory)

    def oldest_age(self) -> float | None:
        """Seconds the oldest unsent update has waited (wall clock: the rows
        keep when they were queued, across restarts); None when none waits."""
        queued_at = None
        if self._depth - len(self._undeleted) > 0:
            try:
                row = self._conn.execute(_OLDEST, (self.dialect,)).fetchone()
            except WRITE_ERRORS as ex:
                log.debug("cannot read the oldest update of %s: %s", self.path, ex)
            else:
                queued_at = row[0] if row else None
        if queued_at is None and len(self.memory):
            queued_at = self.memory.oldest_queued_at()
        return None if queued_at is None else max(0.0, time.time() - queued_at)

    def push(self, task_id: str, payload: dict[str, typing.Any]) -> None:
        self.push_many([(task_id, payload)])

    def push_many(self, items: typing.Iterable[tuple[str, dict[str, typing.Any]]]) -> None:
        rows = [dict(encode_row(task_id, payload), dialect=self.dialect) for task_id, payload in items]
        if not rows:
            return
        if len(self.memory):
            # Behind what waits in memory, to keep the order; the flusher writes them all.
            self.memory.add(rows)
        elif not self._write(rows):
            self.memory.add(rows)
        self.pushed.set()

    def write_pending(self) -> bool:
        """Move what waits in memory to disk, and delete what was delivered but
        could not be deleted; False while writing still fails."""
        if self._undeleted and not self._delete_rows(list(self._undeleted)):
            return False
        if not len(self.memory):
            return True
        rows = [dict(row, dialect=self.dialect) for row in self.memory.rows()]
        if not self._write(rows):
            return False
        self.memory.clear()
        log.warning("the update queue %s can be written again: %d update(s) kept in memory are on disk now",
                     self.path, len(rows))
        return True

    def _write(self, rows: list[dict[str, typing.Any]]) -> bool:
        try:
            with self._transaction():
                self._insert(rows)
        except WRITE_ERRORS as ex:
            self._write_failed(ex)
            return False
        self._space.wrote(len(rows), sum(row_size(row["payload"], row["log"]) for row in rows))
        self._depth += len(rows)
        if self.write_error is not None:
            log.warning("the update queue %s can be written again", self.path)
            self.write_error = None
        return True

    def _insert(self, rows: list[dict[str, typing.Any]]) -> None:
        """Insert inside the caller's transaction (tests journal updates here)."""
        self._conn.executemany(_INSERT, rows)

    def _write_failed(self, ex: Exception) -> None:
        first = self.write_error is None
        self.write_error = f"{type(ex).__name__}: {getattr(ex, 'orig', None) or ex}"
        if first:
            log.error("cannot write to the update queue %s (%s); updates wait in memory (up to %d bytes, then "
                      "log lines are dropped and counted) and are sent from there; no new task until all are sent",
                      self.path, self.write_error, self.memory.limit)

    def head(self, limit: int = 100, max_bytes: int = 0) -> list[QueuedUpdate]:
        """The oldest ``limit`` unsent updates: those on disk, then those in memory;
        with ``max_bytes``, no more than the first that reach that much JSON (a
        backlog of big log updates would otherwise all be loaded at once)."""
        items: list[QueuedUpdate] = []
        size = read = 0
        wanted = limit + len(self._undeleted)
        try:
            cursor = self._conn.execute(_HEAD, (self.dialect, wanted))
            try:
                # Rows are read one by one, and no gevent switch happens before
                # the cursor is closed: no read snapshot is held across one.
                for row_id, task_id, payload, text in cursor:
                    read += 1
                    if row_id in self._undeleted:
                        continue
                    items.append(QueuedUpdate(row_id, task_id, decode_payload(payload, text)))
                    size += row_size(payload, text)
                    if len(items) >= limit or (max_bytes and size >= max_bytes):
                        return items
            finally:
                cursor.close()
        except WRITE_ERRORS as ex:
            raise RetryLater(f"cannot read the update queue {self.path}: {ex}") from ex
        if read < wanted:
            self._recount(read)
        items += [QueuedUpdate(*entry) for entry in self.memory.head(limit - len(items))]
        return items

    def _recount(self, on_disk: int) -> None:
        """Every row on disk was just read: the count must agree.  It cannot
        differ while the lock keeps other processes away; if it does anyway,
        the file says what is there, and a count waiting for rows that are
        gone would keep the worker from ever taking a task again."""
        if on_disk != self._depth:
            log.warning("the update queue %s holds %d update(s), not the %d counted; another program "
                        "changed it; going by the file", self.path, on_disk, self._depth)
            self._depth = on_disk

    def set_dialect(self, dialect: str) -> int:
        """Send only updates for ``dialect`` from now on; the number of queued
        updates for the other generation (they stay; the warning says so)."""
        self.dialect = dialect
        total: int = self._conn.execute("SELECT count(*) FROM task_updates").fetchone()[0]
        self._depth = self._conn.execute(_COUNT, (dialect,)).fetchone()[0]
        others = total - self._depth
        if others:
            log.warning("%s holds %d update(s) for another Manager generation than this one (%s); they stay "
                        "there and are sent only when the worker speaks to such a Manager again",
                        self.path, others, dialect)
        return others

    def delete_task(self, task_id: str) -> int:
        """Forget every queued update of ``task_id`` (a Manager that no longer
        knows the task would refuse each of them); how many there were."""
        dropped = [entry_id for entry_id, entry_task, _ in self.memory.head(len(self.memory)) if entry_task == task_id]
        self.memory.remove(dropped)
        try:
            with self._transaction() as conn:
                ids = [row[0] for row in conn.execute(f"SELECT id FROM task_updates WHERE task_id = ? AND {_OURS}",
                                                      (task_id, self.dialect))]
                deleted = conn.execute(f"DELETE FROM task_updates WHERE task_id = ? AND {_OURS}",
                                       (task_id, self.dialect)).rowcount
        except WRITE_ERRORS as ex:
            raise RetryLater(f"cannot drop the updates of task {task_id} from {self.path}: {ex}") from ex
        # Rows already counted as delivered-but-undeleted must not be subtracted twice.
        self._undeleted.difference_update(ids)
        self._depth = max(0, self._depth - deleted)
        return deleted + len(dropped)

    def delete(self, ids: list[int]) -> None:
        """Forget delivered updates.  If the disk refuses even that, they are
        remembered as delivered and deleted later (``write_pending``)."""
        self.memory.remove([i for i in ids if i < 0])
        on_disk = [i for i in ids if i >= 0]
        if on_disk and not self._delete_rows(on_disk):
            self._undeleted.update(on_disk)
        if on_disk and not len(self) and self._space.may_need_reclaim():
            self.reclaim()

    def file_size(self) -> int:
        """Bytes of the queue on disk: the file and its write-ahead log."""
        return self._space.size()

    def reclaim(self, threshold: int = RECLAIM_BYTES) -> bool:
        """Give the space of delivered updates back to the file system, when the
        queue is empty and its file larger than ``threshold``; True if it did
        (fworker.queuespace).  A push while that runs waits for it, up to the
        connection's busy timeout; it takes milliseconds once the queue is empty."""
        return not len(self) and self._space.reclaim(threshold)

    def _delete_rows(self, ids: list[int]) -> bool:
        try:
            with self._transaction() as conn:
                # rowcount, not len(ids): an id deleted twice must not count twice.
                deleted = sum(conn.execute(sql, params).rowcount for sql, params in _deletes(ids))
        except WRITE_ERRORS as ex:
            self._write_failed(ex)
            return False
        self._undeleted.difference_update(ids)
        self._depth = max(0, self._depth - deleted)
        return True

    def reject(self, item: QueuedUpdate, answer: str) -> None:
        """Move an update the Manager cannot decode out of the way, keeping it."""
        # Plain SQL, not dataset's insert: that commits at once, and the row must
        # leave task_updates in the same transaction.
        row = (item.task_id, json.dumps(item.payload), answer, time.time())
        deleted = 0
        try:
            with self._transaction() as conn:
                conn.execute(_REJECT, row)
                if item.id >= 0:
                    deleted = conn.execute("DELETE FROM task_updates WHERE id = ?", (item.id,)).rowcount
        except WRITE_ERRORS as ex:
            raise RetryLater(f"cannot set update {item.id} aside in {self.path}: {ex}") from ex
        self._space.wrote(1, len(row[1]) + len(answer))
        self._depth = max(0, self._depth - deleted)
        if item.id < 0:
            self.memory.remove([item.id])

    def rejected(self) -> list[dict[str, typing.Any]]:
        with self._db:
            return [dict(row) for row in self._rejected.find(order_by="id")]

    def close(self) -> None:
        if not self.write_pending() and len(self.memory):
            log.error("%d update(s) could not be written to %s and are lost: %s",
                      len(self.memory), self.path, self.write_error)
        try:
            self._db.close()  # disposing of dataset's engine closes the connection too
            self._conn.close()
        finally:
            self.lock.release()  # last: nothing of this queue is touched any more


def _deletes(ids: list[int]) -> typing.Iterator[tuple[str, tuple[int, ...]]]:
    """DELETE statements for these ids.  Consecutive ids (the flusher deletes
    from the head: the usual case) take one range, whatever their number, and
    one statement SQLite has prepared before; that is exactly ``id IN (...)``,
    as every integer of the range is listed.  Others go in lists."""
    unique = sorted(set(ids))
    if not unique:
        return
    if unique[-1] - unique[0] == len(unique) - 1:
        yield "DELETE FROM task_updates WHERE id BETWEEN ? AND ?", (unique[0], unique[-1])
        return
    for start in range(0, len(unique), _DELETE_CHUNK):
        chunk = tuple(unique[start:start + _DELETE_CHUNK])
        yield f"DELETE FROM task_updates WHERE id IN ({','.join('?' * len(chunk))})", chunk
