"""Task updates waiting in memory while the update queue's file cannot be
written (a full disk, an I/O error, a read-only mount): ``fworker.queue``
keeps them here, after everything on disk, until writing works again."""
from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import typing

from fworker.rows import decode_payload, encode_row, row_size

log = logging.getLogger(__name__)

# Updates waiting in memory take at most this much (their JSON); beyond it log
# lines are dropped (see Overflow).
MEMORY_LIMIT = 16 * 1024 * 1024


@dataclasses.dataclass
class _Entry:
    id: int
    task_id: str
    payload: dict[str, typing.Any]
    size: int
    queued_at: float
    frozen: bool = False  # handed to the flusher: its content must not change any more
    dropped_lines: int = 0  # > 0: a note about dropped log lines, not an update
    dropped_bytes: int = 0


class Overflow:
    """Updates that could not be written to disk, in order, bounded by ``limit``
    bytes of JSON.  Beyond the limit nothing that changes the task's status is
    lost: log lines are dropped (counted, with a note in the task's log where
    they were), and activity/progress values are merged into the update before
    them (the newest value wins)."""

    def __init__(self, path: str, limit: int):
        self.path = path
        self.limit = limit
        self.dropped_lines = 0  # in this worker's life, for the logs and tests
        self._entries: list[_Entry] = []
        self._bytes = 0
        self._next_id = -1

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, rows: list[dict[str, typing.Any]]) -> None:
        for row in rows:
            payload, size = decode_payload(row["payload"], row["log"]), row_size(row["payload"], row["log"])
            if self._bytes + size <= self.limit:
                self._append(row["task_id"], payload, size, row["queued_at"])
            else:
                self._squeeze(row["task_id"], payload, row["queued_at"])

    def head(self, limit: int) -> list[tuple[int, str, dict[str, typing.Any]]]:
        entries = self._entries[:limit]
        for entry in entries:
            entry.frozen = True
        return [(entry.id, entry.task_id, self._payload(entry)) for entry in entries]

    def oldest_queued_at(self) -> float | None:
        return self._entries[0].queued_at if self._entries else None

    def rows(self) -> list[dict[str, typing.Any]]:
        return [encode_row(entry.task_id, self._payload(entry), entry.queued_at) for entry in self._entries]

    def remove(self, ids: list[int]) -> None:
        if ids:
            gone = set(ids)
            self._entries = [entry for entry in self._entries if entry.id not in gone]
            self._bytes = sum(entry.size for entry in self._entries)

    def clear(self) -> None:
        self._entries, self._bytes = [], 0

    def _append(self, task_id: str, payload: dict[str, typing.Any], size: int, queued_at: float) -> _Entry:
        entry = _Entry(self._next_id, task_id, payload, size, queued_at)
        self._next_id -= 1
        self._entries.append(entry)
        self._bytes += size
        return entry

    def _squeeze(self, task_id: str, payload: dict[str, typing.Any], queued_at: float) -> None:
        text = payload.pop("log", None)
        if isinstance(text, str):
            self._note_dropped(task_id, text, queued_at)
        if not payload:
            return
        last = self._entries[-1] if self._entries else None
        if (last is not None and not last.frozen and not last.dropped_lines and last.task_id == task_id
                and "task_status" not in last.payload and "task_status" not in payload):
            last.payload.update(payload)
        else:  # a status change is never dropped: at most a few per task
            self._append(task_id, payload, len(json.dumps(payload)), queued_at)

    def _note_dropped(self, task_id: str, text: str, queued_at: float) -> None:
        if not self.dropped_lines:
            log.error("memory for updates waiting to be written is full (%d bytes): dropping log lines "
                      "(counted, with a note in the task log) until %s can be written or the Manager is reached",
                      self.limit, self.path)
        lines = text.count("\n") + 1
        self.dropped_lines += lines
        note = next((entry for entry in reversed(self._entries)
                     if entry.dropped_lines and not entry.frozen and entry.task_id == task_id), None)
        if note is None:
            note = self._append(task_id, {}, 200, queued_at)
        note.dropped_lines += lines
        note.dropped_bytes += len(text)

    def _payload(self, entry: _Entry) -> dict[str, typing.Any]:
        if not entry.dropped_lines:
            return dict(entry.payload)
        stamp = datetime.datetime.fromtimestamp(entry.queued_at, datetime.UTC)
        return {"log": f"{stamp.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}: worker: {entry.dropped_lines} log line(s) "
                       f"({entry.dropped_bytes} bytes) dropped here: the update queue {self.path} could not be "
                       f"written and the memory for waiting updates was full"}
