"""Child output that has been read from the pipe but not handled yet.

Handling output (splitting, timestamping, the durable queue, JSON, HTTP) costs the
worker far more than reading it, so a child that prints fast would spend most of
its time blocked on a full pipe if the two went in lock-step.  ``ChildProcess``
therefore empties the pipe into a ``Spool`` before handling each chunk: the child
only waits when the spool is full.  The spool keeps up to ``memory_limit`` bytes
in memory and the rest in an unlinked temporary file (so a 100 MB burst costs
disk, not RAM), in order, up to ``limit`` bytes in all.  It remembers when each
piece was read, so that lines handled late still carry the time they came.
"""
from __future__ import annotations

import collections
import errno
import fcntl
import logging
import os
import tempfile
import time
import typing

log = logging.getLogger(__name__)

MEMORY_LIMIT = 8 * 1024 * 1024
LIMIT = 256 * 1024 * 1024
PIPE_SIZE = 1024 * 1024  # the default /proc/sys/fs/pipe-max-size
FILL_MAX = 8 * PIPE_SIZE  # read per fill() call at most
# The file stops growing when its file system would have less free than this
# left: the durable queue lives there too and must still be writable.
DISK_RESERVE = 256 * 1024 * 1024
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def grow_pipe(fd: int) -> None:
    """Let the pipe hold more than Linux's default 64 KiB, so that a child printing
    fast seldom finds it full between two ``Spool.fill`` calls (best effort)."""
    try:
        fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass  # not Linux, or over /proc/sys/fs/pipe-max-size for this user: the default


class Spool:
    """First in, first out; ``put`` never raises: when the file cannot be written
    (a full disk), data stays in memory and the spool reports itself full, so
    the reader stops taking more until handling has caught up."""

    def __init__(self, *, directory: str | None = None, memory_limit: int | None = None,
                 limit: int | None = None):
        self.directory = directory
        self.memory_limit = MEMORY_LIMIT if memory_limit is None else memory_limit
        self.limit = LIMIT if limit is None else limit
        # In order: bytes held in memory, or the length of a stretch of the file.
        self._segments: collections.deque[bytes | int] = collections.deque()
        self._memory_size = 0
        self._size = 0
        self._file: typing.BinaryIO | None = None
        self._read_at = 0  # file offset of the oldest unread byte
        self._write_at = 0
        self.write_failed = False
        # When what was put came: (its offset in all the bytes ever put, wall-clock time).
        self._marks: collections.deque[tuple[int, float]] = collections.deque()
        self._put_total = self._got_total = 0
        self.read_at: float | None = None  # when the bytes the last get() returned were put

    def __len__(self) -> int:
        return self._size

    def full(self) -> bool:
        return self._size >= self.limit or (self.write_failed and self._memory_size >= self.memory_limit)

    def put(self, data: bytes) -> None:
        if not data:
            return
        self._marks.append((self._put_total, time.time()))
        self._put_total += len(data)
        self._size += len(data)
        if self._memory_size + len(data) > self.memory_limit and self._write(data):
            if self._segments and isinstance(self._segments[-1], int):
                self._segments[-1] += len(data)
            else:
                self._segments.append(len(data))
            return
        self._segments.append(data)
        self._memory_size += len(data)

    def fill(self, fd: int) -> tuple[bool, int]:
        """Read what the non-blocking pipe ``fd`` holds, without waiting and not
        beyond full: (end of output, bytes read)."""
        read = 0
        # Capped per call: a child refilling the pipe as fast as it is read must
        # not keep the other greenlets waiting.
        while not self.full() and read < FILL_MAX:
            try:
                data = os.read(fd, PIPE_SIZE)
            except BlockingIOError:
                break
            if not data:
                return True, read
            self.put(data)
            read += len(data)
            if len(data) < PIPE_SIZE:
                break  # the pipe was empty for a moment: reading on would race the child line by line
        return False, read

    def get(self, size: int) -> bytes:
        """Up to ``size`` of the oldest bytes (b"" when empty)."""
        if not self._segments:
            return b""
        head = self._segments.popleft()
        if isinstance(head, bytes):
            # Gather small pieces: the caller's cost is per call, not per byte.
            pieces, total = [head], len(head)
            while total < size and self._segments and isinstance(self._segments[0], bytes):
                piece = typing.cast(bytes, self._segments.popleft())  # its type tested just above
                pieces.append(piece)
                total += len(piece)
            joined = b"".join(pieces) if len(pieces) > 1 else head
            data = joined[:size]
            if len(joined) > size:
                self._segments.appendleft(joined[size:])
            self._memory_size -= len(data)
        else:
            data = self._read(min(size, head))
            if head > len(data):
                self._segments.appendleft(head - len(data))
        self._size -= len(data)
        # The time of the first byte (a get is 64 KiB at most, a put from the pipe up to 1 MiB).
        while len(self._marks) > 1 and self._marks[1][0] <= self._got_total:
            self._marks.popleft()
        self.read_at = self._marks[0][1]
        self._got_total += len(data)
        return data

    def close(self) -> None:
        self._segments.clear()
        self._marks.clear()
        self._memory_size = self._size = self._read_at = self._write_at = 0
        if self._file is not None:
            self._file.close()
            self._file = None

    def _write(self, data: bytes) -> bool:
        try:
            if self._file is None:
                if self.directory:
                    os.makedirs(self.directory, exist_ok=True)
                # Unlinked at once: nothing is left behind, whatever kills the worker.
                # Kept open between calls; close() closes it.
                self._file = tempfile.TemporaryFile(prefix="fworker-output-", dir=self.directory)  # noqa: SIM115
            disk = os.fstatvfs(self._file.fileno())
            if disk.f_bavail * disk.f_frsize < DISK_RESERVE + len(data):
                raise OSError(errno.ENOSPC, f"less than {DISK_RESERVE // 2**20} MiB would be left free")
            self._file.seek(self._write_at)
            self._file.write(data)
            self._file.flush()
        except OSError as ex:
            if not self.write_failed:
                log.warning("cannot spool child output to disk (%s): holding it in memory "
                            "and reading the child's output only as fast as it is handled", ex)
            self.write_failed = True
            return False
        self._write_at += len(data)
        self.write_failed = False
        return True

    def _read(self, size: int) -> bytes:
        assert self._file is not None
        self._file.seek(self._read_at)
        data = self._file.read(size)
        if len(data) != size:
            raise OSError(f"output spool file is {len(data)} bytes short at offset {self._read_at}")
        self._read_at += size
        if self._read_at == self._write_at:
            # Drained: start over at the beginning, giving the disk space back.
            self._file.truncate(0)
            self._read_at = self._write_at = 0
        return data
