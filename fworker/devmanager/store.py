"""The development Manager's state, in one SQLite file through ``dataset``.

Everything the Manager knows survives a restart: workers (with a hash of
their secret), jobs, tasks, every accepted task update (the task log is the
concatenation of their ``log`` fields), produced-output notices, status
acknowledgements and recorded task failures.

Two rules keep this safe under gevent (see FIELD-NOTES):

- every database operation runs inside ``with db:``, which releases the
  greenlet's connection when the transaction ends (dataset keys connections
  by thread id, which gevent turns into one connection per greenlet);
- a lock serialises transactions, so that a read-modify-write done by the
  Roster or the Dispatcher inside :meth:`Store.transaction` is atomic with
  respect to other greenlets.

Rows come back as plain dicts; list and dict columns are stored as JSON text
and decoded here, so callers never see the encoding.
"""
import contextlib
import json
import logging
import os
import typing

import dataset
import gevent.lock
from dataset.util import SQLPlainValue, SQLWriteValue

from . import common
from .common import Row

logger = logging.getLogger(__name__)

# The schema, created explicitly rather than by dataset's guessing, so that
# queries on an empty database work and no schema change happens inside a
# transaction later.  Ids are 24-hex text; "seq" columns give arrival order.
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)""",
    """CREATE TABLE IF NOT EXISTS workers (
        id TEXT PRIMARY KEY, seq INTEGER, secret_hash TEXT, nickname TEXT, platform TEXT,
        supported_task_types TEXT, status TEXT, status_requested TEXT,
        lazy_status_request BOOLEAN, address TEXT, software TEXT,
        registered TEXT, last_seen TEXT, signed_off INTEGER)""",
    """CREATE TABLE IF NOT EXISTS jobs (
        id TEXT PRIMARY KEY, seq INTEGER, name TEXT, job_type TEXT,
        priority INTEGER, project TEXT, user TEXT, created TEXT)""",
    """CREATE TABLE IF NOT EXISTS tasks (
        id TEXT PRIMARY KEY, seq INTEGER, job TEXT, name TEXT, status TEXT,
        priority INTEGER, job_priority INTEGER, job_type TEXT, task_type TEXT,
        project TEXT, user TEXT, commands TEXT, parents TEXT,
        worker TEXT, last_worker TEXT, activity TEXT,
        task_progress_percentage INTEGER, current_command_idx INTEGER,
        command_progress_percentage INTEGER, failed_by_workers TEXT,
        metrics TEXT, created TEXT, last_ping TEXT)""",
    "CREATE INDEX IF NOT EXISTS tasks_by_status ON tasks (status, task_type)",
    "CREATE INDEX IF NOT EXISTS tasks_by_job ON tasks (job, seq)",
    """CREATE TABLE IF NOT EXISTS task_updates (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, task TEXT, worker TEXT,
        received TEXT, body TEXT, log TEXT)""",
    "CREATE INDEX IF NOT EXISTS task_updates_by_task ON task_updates (task, seq)",
    """CREATE TABLE IF NOT EXISTS outputs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, worker TEXT, paths TEXT, received TEXT, task TEXT)""",
    """CREATE TABLE IF NOT EXISTS acks (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, worker TEXT, status TEXT, received TEXT)""",
    """CREATE TABLE IF NOT EXISTS failures (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, worker TEXT, job TEXT,
        task_type TEXT, task TEXT, received TEXT)""",
)

_JSON_COLUMNS = {"supported_task_types", "commands", "parents", "failed_by_workers",
                 "metrics", "paths"}
_BOOL_COLUMNS = {"lazy_status_request"}


def _encode(row: typing.Mapping[str, typing.Any]) -> Row:
    return {key: json.dumps(value) if key in _JSON_COLUMNS and value is not None else value
            for key, value in row.items()}


def _decode(row: typing.Mapping[str, typing.Any]) -> Row:
    decoded = {}
    for key, value in row.items():
        if key in _JSON_COLUMNS and value is not None:
            value = json.loads(value)
        elif key in _BOOL_COLUMNS:
            value = bool(value)
        decoded[key] = value
    return decoded


def _update_body(row: Row) -> Row:
    """An update's body as it came, its log put back (see add_task_update)."""
    body: Row = json.loads(row["body"])
    if row["log"] is not None:
        body["log"] = row["log"]
    return body


def any_of(values: typing.Iterable[str]) -> list[SQLPlainValue]:
    """A filter value matching any of values (dataset turns a list into SQL IN)."""
    return list(values)


class Store:
    """Tables and row operations; the rules live in the Roster and Dispatcher."""

    # The CREATE statements run at every start; a subclass may declare its own.
    SCHEMA: tuple[str, ...] = _SCHEMA

    def __init__(self, db_path: str | os.PathLike[str]):
        self.path = str(db_path)
        # ensure_schema=False: dataset must not add columns on its own; a
        # misspelt column is then a bug caught by the tests, not a new column.
        self.db = dataset.connect(f"sqlite:///{self.path}", ensure_schema=False,
                                  on_connect_statements=["PRAGMA synchronous=NORMAL"])
        self._lock = gevent.lock.RLock()
        with self.transaction():
            for statement in self.SCHEMA:
                self.db.query(statement)
        self.manager_id = self._manager_id()

    @contextlib.contextmanager
    def transaction(self) -> typing.Iterator["Store"]:
        """One atomic unit of work; nests (only the outermost commits)."""
        with self._lock, self.db:
            yield self

    def close(self) -> None:
        """Close pooled connections; the Store stays usable (they reopen on demand)."""
        with self._lock:
            if self.db.engine is not None:  # None only after dataset's own close()
                self.db.engine.dispose()

    def _manager_id(self) -> str:
        """This Manager's id, made once and kept, like a real Manager's."""
        with self.transaction():
            row = self.db["meta"].find_one(key="manager_id")
            if row is not None:
                return str(row["value"])
            manager_id = common.new_id()
            self.db["meta"].insert({"key": "manager_id", "value": manager_id})
            return manager_id

    # Generic row access.  Table names are fixed strings chosen by our own code.

    def _insert(self, table: str, row: Row) -> None:
        with self.transaction():
            self.db[table].insert(_encode(row))

    def _get(self, table: str, **filters: SQLWriteValue) -> Row | None:
        with self.transaction():
            row = self.db[table].find_one(**filters)
        return None if row is None else _decode(row)

    def _find(self, table: str, order_by: str | list[str] = "seq", /,
              **filters: SQLWriteValue) -> list[Row]:
        with self.transaction():
            # dataset takes its options (_limit, _step...) and the column filters as
            # keywords alike, so no splat of filter values can type-check against them.
            rows = self.db[table].find(order_by=order_by, **filters)  # type: ignore[arg-type]
            return [_decode(row) for row in rows]

    def _update(self, table: str, row_id: str, fields: typing.Mapping[str, typing.Any]) -> None:
        with self.transaction():
            self.db[table].update(_encode(dict(fields, id=row_id)), ["id"])

    def _next_seq(self, table: str) -> int:
        with self.transaction():
            row = next(iter(self.db.query(f"SELECT MAX(seq) AS top FROM {table}")))
            return int(row["top"] or 0) + 1

    # Workers

    def _add_in_order(self, table: str, row: Row) -> None:
        """Insert row with the next ``seq`` of table (its arrival order)."""
        with self.transaction():
            self._insert(table, dict(row, seq=self._next_seq(table)))

    def add_worker(self, row: Row) -> None:
        self._add_in_order("workers", row)

    def worker(self, worker_id: str) -> Row | None:
        return self._get("workers", id=worker_id)

    def workers(self, **filters: SQLWriteValue) -> list[Row]:
        return self._find("workers", **filters)

    def update_worker(self, worker_id: str, **fields: typing.Any) -> None:
        self._update("workers", worker_id, fields)

    def delete_worker(self, worker_id: str) -> None:
        with self.transaction():
            self.db["workers"].delete(id=worker_id)

    # Jobs and tasks

    def add_job(self, row: Row) -> None:
        self._add_in_order("jobs", row)

    def job(self, job_id: str) -> Row | None:
        return self._get("jobs", id=job_id)

    def jobs(self) -> list[Row]:
        return self._find("jobs")

    def add_task(self, row: Row) -> None:
        self._add_in_order("tasks", row)

    def task(self, task_id: str) -> Row | None:
        return self._get("tasks", id=task_id)

    def tasks(self, **filters: SQLWriteValue) -> list[Row]:
        """Tasks in submission order; filters as in dataset (a list means IN)."""
        return self._find("tasks", **filters)

    def tasks_by_priority(self, statuses: typing.Iterable[str], task_types: typing.Iterable[str],
                          page: int = 50) -> typing.Iterator[Row]:
        """Candidate tasks, best first: job priority, task priority, age.
        Read a page at a time: the dispatcher usually takes the first one, and
        decoding the whole queue on every fetch made dispatch O(queue)."""
        offset = 0
        while True:
            with self.transaction():
                rows = [_decode(row) for row in self.db["tasks"].find(
                    order_by=["-job_priority", "-priority", "seq"], status=any_of(statuses),
                    task_type=any_of(task_types), _limit=page, _offset=offset)]
            yield from rows
            if len(rows) < page:
                return
            offset += page

    def update_task(self, task_id: str, **fields: typing.Any) -> None:
        self._update("tasks", task_id, fields)

    def delete_task(self, task_id: str) -> None:
        with self.transaction():
            self.db["tasks"].delete(id=task_id)
            self.db["task_updates"].delete(task=task_id)

    # Task updates and the log they carry

    def add_task_update(self, task_id: str, worker_id: str, body: Row) -> None:
        # The log is kept once, in its own column, out of the body's JSON: it is
        # most of an update's size, and encoding and storing it twice was most of
        # this Manager's work on a chatty task.
        log = body.get("log")
        if isinstance(log, str):
            body = {key: value for key, value in body.items() if key != "log"}
        self._insert("task_updates", {
            "task": task_id, "worker": worker_id, "received": common.utc_timestamp(),
            "body": json.dumps(body), "log": log if isinstance(log, str) else None,
        })

    def task_updates(self, task_id: str) -> list[Row]:
        """The bodies of every accepted update of a task, in arrival order."""
        return [_update_body(row) for row in self._find("task_updates", task=task_id)]

    def task_update_rows(self, task_id: str) -> list[Row]:
        """Like task_updates, with the arrival time and sender of each."""
        rows = self._find("task_updates", task=task_id)
        return [dict(row, body=_update_body(row)) for row in rows]

    def task_log(self, task_id: str) -> str:
        """The task's log: each update's ``log`` appended, one line break between."""
        with self.transaction():
            rows = self.db["task_updates"].find(task=task_id, order_by="seq")
            chunks = [row["log"] for row in rows if row["log"]]
        text = ""
        for chunk in chunks:
            if text and not text.endswith("\n"):
                text += "\n"
            text += chunk
        return text

    # Records: produced output, acknowledgements, failures

    def add_output(self, worker_id: str, paths: list[str], task_id: str | None = None) -> None:
        """``task_id``: the task the worker was running, for the page's pictures."""
        self._insert("outputs", {"worker": worker_id, "paths": paths, "task": task_id,
                                 "received": common.utc_timestamp()})

    def outputs(self, **filters: SQLWriteValue) -> list[Row]:
        return self._find("outputs", **filters)

    def add_ack(self, worker_id: str, status: str) -> None:
        self._insert("acks", {"worker": worker_id, "status": status,
                              "received": common.utc_timestamp()})

    def acks(self) -> list[Row]:
        return self._find("acks")

    def add_failure(self, worker_id: str, task: Row) -> None:
        self._insert("failures", {"worker": worker_id, "job": task["job"], "task": task["id"],
                                  "task_type": task["task_type"],
                                  "received": common.utc_timestamp()})

    def failures(self, **filters: SQLWriteValue) -> list[Row]:
        return self._find("failures", **filters)
