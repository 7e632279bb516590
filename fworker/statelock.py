"""One process per worker state: an exclusive lock beside the update queue.

Two processes sharing a queue (an operator's second start, a service manager
plus a manual run, two instances configured onto one file) would both take
tasks, each would stop the other's renders as its own leftovers, and each
would count rows the other deleted.  So the queue is opened only under an
exclusive ``flock`` on its lock file (``fworker.statefiles.lock_path``), held
until the queue is closed.  The kernel drops the lock with the last open
descriptor, so a crashed or SIGKILLed worker leaves no stale lock; the
descriptor is close-on-exec, so no render or leftover child holds it either.

The holder writes its PID into the file, only so the refusal can name it;
the file itself is never deleted (a process could lock the old file between
another's unlink and its re-creation, and two would run).
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os

from fworker.errors import AlreadyRunning, Fatal

log = logging.getLogger(__name__)


class StateLock:
    """The lock on one worker's state; ``acquire()`` or refuse, ``release()``."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> StateLock:
        """Take the lock without waiting; ``AlreadyRunning`` when another
        process (or another object of this one) holds it."""
        if self._fd is not None:
            return self
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as ex:
            holder = _read_pid(fd)
            os.close(fd)
            if ex.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise AlreadyRunning(self.path, holder) from None
            raise Fatal(f"cannot lock {self.path} ({ex.strerror}); the worker refuses to run without "
                        "knowing that no other process uses its state") from None
        self._fd = fd
        self._write_pid()
        log.debug("holding %s", self.path)
        return self

    def release(self) -> None:
        """Let the next process in; the file stays (see the module's docstring)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _open(self) -> int:
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            # os.open's descriptors are close-on-exec already (PEP 446); said
            # here because a child inheriting it would keep the lock alive.
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as ex:
            raise Fatal(f"cannot open the lock file {self.path}: {ex.strerror}") from None

    def _write_pid(self) -> None:
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except OSError as ex:
            # Only the refusal message of a second process needs it.
            log.warning("cannot write this process's PID into %s: %s", self.path, ex.strerror)

    def __del__(self) -> None:
        # A queue dropped without close() (tests do) must not keep its lock
        # until the process ends.
        self.release()


def _read_pid(fd: int) -> int | None:
    """The PID the holder wrote, if it did (it may be about to)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
