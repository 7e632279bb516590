"""The update queue's file size: when an emptied queue is compacted, and how.

A flood of log lines must not leave hundreds of MB behind for good: once the
queue is empty and its file (with its WAL) is larger than ``RECLAIM_BYTES``
(more than what the last VACUUM left: updates the Manager rejected are kept, and
compacting cannot give their space back), VACUUM gives the space back.  The file grows only by what the queue writes, so
its size is measured (two stat() calls) only once enough was written since the
last measurement to take it past that size: an emptying delivery usually costs
no system call at all.
"""
from __future__ import annotations

import logging
import os
import sqlite3

import gevent

log = logging.getLogger(__name__)

# An empty queue whose file (with its WAL) is larger than this is compacted.
RECLAIM_BYTES = 8 * 1024 * 1024
# A row written costs the file at most this many bytes per character of its
# text (up to 4 bytes in UTF-8, stored in the WAL and again in the file) plus
# per row (its other columns, cell headers, the pages of a small transaction).
# Over-counting only measures sooner.
_GROWTH_PER_CHAR = 8
_GROWTH_PER_ROW = 1024


class QueueSpace:
    """The size of the queue file at ``path``, measured when opened and again
    only once what was written since could matter."""

    def __init__(self, path: str, conn: sqlite3.Connection):
        self.path = path
        # What the file may have grown by since its size was last measured,
        # and how much growth would take it past RECLAIM_BYTES (measure).
        self._grown = self._room = 0
        self._left = 0  # bytes the last VACUUM left: compacting again cannot go below them
        self._wal_limit = _wal_cap(conn)
        self.measure()  # a file left large by an earlier run is compacted once empty

    def wrote(self, rows: int, text: int) -> None:
        """``rows`` rows holding ``text`` characters of text were written."""
        self._grown += rows * _GROWTH_PER_ROW + text * _GROWTH_PER_CHAR

    def measure(self) -> int:
        """The file's size with its WAL now; sets how much the file may still
        grow before it could be larger than RECLAIM_BYTES.  The WAL may go
        up to its cap with no row text to show for it: that is kept aside."""
        main, wal = (_size(path) for path in (self.path, self.path + "-wal"))
        self._room = max(0, RECLAIM_BYTES + self._left - main - max(wal, self._wal_limit))
        self._grown = 0
        return main + wal

    def may_need_reclaim(self) -> bool:
        """Whether the file may be larger than RECLAIM_BYTES, without a stat()
        unless enough was written since it was last measured."""
        return self._grown >= self._room

    def size(self) -> int:
        """Bytes of the queue on disk: the file and its write-ahead log."""
        return sum(os.path.getsize(p) for p in (self.path, self.path + "-wal") if os.path.exists(p))

    def reclaim(self, threshold: int) -> bool:
        """Compact the (empty) queue file if it is larger than ``threshold``;
        True if it did.  VACUUM rewrites the file: it runs in the thread pool,
        on a connection of its own, so the hub goes on meanwhile.  A failure is
        logged and leaves the file as it was."""
        before = self.measure()
        if before <= threshold + self._left:
            return False
        try:
            gevent.get_hub().threadpool.apply(_vacuum, (self.path,))
        except (sqlite3.DatabaseError, OSError) as ex:  # what a failed write raises, without SQLAlchemy
            log.warning("could not compact the empty update queue %s (%d bytes): %s", self.path, before, ex)
            return False
        self._left = self.measure()
        self.measure()  # again: the room depends on what was left
        log.info("compacted the empty update queue %s: %d -> %d bytes", self.path, before, self._left)
        return True


def _wal_cap(conn: sqlite3.Connection) -> int:
    """How large the WAL grows from small transactions alone: it starts over
    at its beginning after each automatic checkpoint, which runs at
    ``wal_autocheckpoint`` pages (when that is off: no limit, and the file
    is measured at every chance)."""
    page_size: int = conn.execute("PRAGMA page_size").fetchone()[0]
    pages: int = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    return 32 + (pages + 1) * (page_size + 24) if pages > 0 else RECLAIM_BYTES


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def _vacuum(path: str) -> None:
    """VACUUM, then move the WAL into the file and truncate both (in a pool thread)."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
