"""The Flamenco 3 development Manager's state: the 2.x Store's machinery
(SQLite through dataset, one lock, rows as dicts) over tables of its own.

Workers, jobs and tasks have v3 fields (``name``, ``can_restart``, the step
counts); ``worker`` of a task is the last worker it was given to, kept when the
task is re-queued, as the real Manager keeps it.  ``outputs`` records each
accepted preview image (its type, size and SHA-256, not the bytes).
"""
import hashlib

from dataset.util import SQLWriteValue

from .. import common
from ..common import Row
from ..store import Store

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)""",
    """CREATE TABLE IF NOT EXISTS workers (
        id TEXT PRIMARY KEY, seq INTEGER, secret_hash TEXT, name TEXT, platform TEXT,
        supported_task_types TEXT, status TEXT, status_requested TEXT,
        lazy_status_request BOOLEAN, can_restart INTEGER, address TEXT, software TEXT,
        registered TEXT, last_seen TEXT, signed_off INTEGER)""",
    """CREATE TABLE IF NOT EXISTS jobs (
        id TEXT PRIMARY KEY, seq INTEGER, name TEXT, job_type TEXT, priority INTEGER,
        created TEXT)""",
    """CREATE TABLE IF NOT EXISTS tasks (
        id TEXT PRIMARY KEY, seq INTEGER, job TEXT, name TEXT, status TEXT,
        priority INTEGER, job_priority INTEGER, job_type TEXT, task_type TEXT,
        commands TEXT, parents TEXT, worker TEXT, activity TEXT,
        steps_completed INTEGER, steps_total INTEGER, failed_by_workers TEXT,
        created TEXT, last_touched TEXT)""",
    "CREATE INDEX IF NOT EXISTS tasks_by_status ON tasks (status, task_type)",
    "CREATE INDEX IF NOT EXISTS tasks_by_job ON tasks (job, seq)",
    """CREATE TABLE IF NOT EXISTS task_updates (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, task TEXT, worker TEXT,
        received TEXT, body TEXT, log TEXT)""",
    "CREATE INDEX IF NOT EXISTS task_updates_by_task ON task_updates (task, seq)",
    """CREATE TABLE IF NOT EXISTS outputs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, worker TEXT, task TEXT, job TEXT,
        mime TEXT, size INTEGER, sha256 TEXT, image_ok INTEGER, received TEXT)""",
    """CREATE TABLE IF NOT EXISTS acks (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, worker TEXT, status TEXT, received TEXT)""",
    """CREATE TABLE IF NOT EXISTS failures (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, worker TEXT, job TEXT,
        task_type TEXT, task TEXT, received TEXT)""",
)

# The first bytes of the two formats the Manager decodes.
_MAGIC = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff"}


def looks_like(mime: str, image: bytes) -> bool:
    """Whether image starts as a file of that type does (the real Manager decodes it
    later, in the background, and only logs an image it cannot read)."""
    magic = _MAGIC.get(mime)
    return magic is not None and image.startswith(magic)


class V3Store(Store):
    SCHEMA = _SCHEMA

    def delete_job(self, job_id: str) -> None:
        with self.transaction():
            for task in self.tasks(job=job_id):
                self.delete_task(task["id"])
            self.db["jobs"].delete(id=job_id)

    def add_preview(self, worker_id: str, task: Row, mime: str, image: bytes) -> Row:
        row = {"worker": worker_id, "task": task["id"], "job": task["job"], "mime": mime,
               "size": len(image), "sha256": hashlib.sha256(image).hexdigest(),
               "image_ok": int(looks_like(mime, image)), "received": common.utc_timestamp()}
        self._insert("outputs", row)
        return row

    def previews(self, **filters: SQLWriteValue) -> list[Row]:
        return [dict(row, image_ok=bool(row["image_ok"]))
                for row in self._find("outputs", **filters)]
