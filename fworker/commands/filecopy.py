"""Copying one file's content so that stopping the task stops the copy.

A copy done by one call in a pool thread cannot be stopped: killing the
greenlet that waits for it leaves the thread writing, for minutes on a big
file, into a destination that the next task may already use; a device or a
FIFO as the source never ends at all.  Here the copy runs in a pool thread one
chunk at a time and looks at a stop flag between chunks.  The task's greenlet
waits for it; when that greenlet is stopped (abort, shutdown, task timeout),
it raises the flag and then waits, a bounded time, for the thread to finish
the chunk in hand and remove the partial destination, so that nothing of the
copy writes after its task ended.

Only regular files are copied: the source is opened without blocking (a FIFO
with no writer would block the open itself) and refused, before a byte is
read, when it is anything else.  The destination is created exclusively
(``O_EXCL``): it must not exist, not even as a dangling symbolic link, and a
destination that appears meanwhile is never overwritten.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import stat
import time
import typing

import gevent

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
# How long a stopped copy may take to put down the chunk in hand and clean up.
# A chunk takes milliseconds on a local disk; a hung network share can take any
# time, and then the task must end anyway (the thread still stops after that chunk).
STOP_WAIT = 30.0

_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) \
    | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


class NotARegularFile(OSError):
    """The source is a folder, a device, a FIFO or a socket."""


@dataclasses.dataclass
class Copying:
    """Shared between the copying thread and the waiting greenlet: plain
    attributes only (a gevent primitive must not be touched from a real thread)."""

    size: int = 0  # the source's size when it was opened
    copied: int = 0
    stop: bool = False


def describe(mode: int) -> str:
    """What a file of ``st_mode`` ``mode`` is, for a message: "a FIFO"..."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _open_source(src: str) -> tuple[int, int]:
    fd = os.open(src, _READ_FLAGS)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotARegularFile(f"{src!r} is {describe(info.st_mode)}; only regular files are copied")
        if _READ_FLAGS & getattr(os, "O_NONBLOCK", 0):  # opened so only to see what it is
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, info.st_size


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _copy_in_thread(src: str, dest: str, state: Copying, then: typing.Callable[[], typing.Any] | None) -> typing.Any:
    """The whole copy, in a pool thread, then ``then()`` unless stopped (its
    result returned; when it fails, ``dest`` is removed)."""
    if not _copy_chunks(src, dest, state) or then is None:
        return None
    try:
        return then()
    except BaseException:
        if os.path.lexists(dest):
            os.unlink(dest)
        raise


def _copy_chunks(src: str, dest: str, state: Copying) -> bool:
    """True when the copy ran to the end; False when it stopped on the flag
    (the partial ``dest`` removed)."""
    src_fd, state.size = _open_source(src)
    try:
        dest_fd = os.open(dest, _CREATE_FLAGS, 0o666)
        finished = False
        try:
            while not state.stop:
                data = os.read(src_fd, CHUNK)
                if not data:
                    finished = True
                    break
                _write_all(dest_fd, data)
                state.copied += len(data)
        finally:
            os.close(dest_fd)
            if not finished:  # stopped or failed: half a file is no copy
                os.unlink(dest)
        return finished
    finally:
        os.close(src_fd)


def copy_content(src: str, dest: str, *, on_progress: typing.Callable[[Copying], None] | None = None,
                 interval: float = 1.0, stop_wait: float = STOP_WAIT,
                 then: typing.Callable[[], typing.Any] | None = None) -> typing.Any:
    """Copy the regular file ``src`` to the new file ``dest`` (its folder must
    exist), from the calling greenlet; ``on_progress(state)`` every ``interval``
    seconds meanwhile; ``then()``, in the copying thread once the copy is
    complete (renaming it into place, say), and its result returned.  Raises
    ``OSError`` (``NotARegularFile``, ``FileExistsError``...) with no partial
    ``dest`` left behind.  Stopping the calling greenlet stops the copy (see
    the module's docstring)."""
    state = Copying()
    result = gevent.get_hub().threadpool.spawn(_copy_in_thread, src, dest, state, then)
    try:
        while not result.ready():
            result.wait(interval)
            if not result.ready() and on_progress is not None:
                on_progress(state)
        return result.get()
    except BaseException:
        if not result.ready():
            state.stop = True
            _wait_for_thread(result, stop_wait, dest)
        raise


def _wait_for_thread(result: typing.Any, limit: float, dest: str) -> None:
    """After a stop: wait up to ``limit`` seconds for the copying thread to
    put down its chunk.  A second stop (a repeated signal) does not cut this
    short: the first one is on its way out already."""
    deadline = time.monotonic() + limit
    while not result.ready():
        left = deadline - time.monotonic()
        if left <= 0:
            log.error("a stopped copy to %s is still blocked in the file system after %.0f s; "
                      "it writes no further chunk and removes the partial file when the call returns",
                      dest, limit)
            return
        try:
            result.wait(left)
        except gevent.GreenletExit:
            log.warning("stopped again while a stopped copy to %s puts down its last chunk", dest)
