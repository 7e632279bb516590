"""Where the worker's own log goes, per-task local log files, and the
start-up banner.

``configure()`` sends the log to stderr, or to ``log_file``: rotated by size
with the standard library when ``log_max_bytes`` > 0, otherwise left to
logrotate (the handler reopens the file when it was moved away).
``reopen()`` is the SIGHUP handler's job: close the file and open it again
under its configured name, so ``postrotate kill -HUP`` works with both modes.

``TaskLogFiles`` keeps a copy of each task's log lines on the render node, for
when the Manager is far away or already gone.  A failure there is logged and
never stops a render: the Manager's copy of the log is the one that matters.
"""
from __future__ import annotations

import copy
import logging
import logging.handlers
import os
import re
import sys
import typing

from fworker import safetext, statefiles
from fworker.config import Settings
from fworker.errors import ConfigError

log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)-8s %(name)s: %(message)s"
TASK_LOG_PREFIX = "task-"
TASK_LOG_SUFFIX = ".txt"

# The handler writing log_file, if any: reopen() needs it, and configure()
# closes it when called again.
_file_handler: logging.FileHandler | None = None


def configure(settings: Settings, verbose: bool, debug: bool) -> None:
    """Replace the root logger's handlers with one for stderr or log_file."""
    global _file_handler  # noqa: PLW0603  (the one process-wide log file handler)
    path = settings.log_file
    file_handler = _file_handler_for(settings, path) if path else None
    handler = file_handler or logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter(LOG_FORMAT))
    root = logging.getLogger()
    old_handlers, root.handlers[:] = list(root.handlers), [handler]
    for old in old_handlers:
        old.close()
    _file_handler = file_handler
    root.setLevel(logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING)
    # Life-cycle messages are worth seeing by default; library chatter is not.
    logging.getLogger("fworker").setLevel(logging.NOTSET if (verbose or debug) else logging.INFO)


def _file_handler_for(settings: Settings, path: str) -> logging.FileHandler:
    max_bytes = settings.log_max_bytes
    try:
        if max_bytes > 0:
            return logging.handlers.RotatingFileHandler(
                path, maxBytes=max_bytes, backupCount=settings.log_backup_count,
                encoding="utf-8")
        # No rotation of our own: logrotate moves the file, and this handler
        # notices on the next line and opens a new one, even without SIGHUP.
        return logging.handlers.WatchedFileHandler(path, encoding="utf-8")
    except OSError as ex:
        raise ConfigError(f"log_file = {path!r}: cannot be opened: {ex.strerror}") from None


def reopen() -> None:
    """Close the log file and open it again by name; nothing to do when
    logging to stderr.  Meant for SIGHUP after logrotate moved the file."""
    handler = _file_handler
    if handler is None:
        return
    handler.acquire()
    try:
        if isinstance(handler, logging.handlers.WatchedFileHandler):
            # Reopens when the file was moved or deleted, and also updates
            # the device/inode it watches, which setStream would not.
            handler.reopenIfNeeded()
        else:
            # The handler owns the new stream and closes it.
            old = handler.setStream(open(handler.baseFilename, "a", encoding=handler.encoding))  # noqa: SIM115
            if old is not None:
                old.close()
    finally:
        handler.release()
    log.info("log file %s reopened", handler.baseFilename)


class TaskLog:
    """One task's local log file, opened for appending."""

    def __init__(self, path: str):
        self.path = path
        # errors="replace": a lone surrogate from a decoded child process
        # must not cost the rest of the log.  0600: see TaskLogFiles._make_folder.
        # Kept open between writes; close() closes it.
        self._file: typing.TextIO | None = open(path, "a", encoding="utf-8", errors="replace",  # noqa: SIM115
                                                opener=_private_opener)

    def write_lines(self, lines: typing.Iterable[str]) -> None:
        if self._file is None:
            return
        text = "".join(line.rstrip("\r\n") + "\n" for line in lines)
        try:
            self._file.write(text)
            self._file.flush()  # so that `tail -f` on the node shows lines as they come
        except OSError as ex:
            # A full disk here must not fail the render: say so once and stop writing.
            log.warning("task log %s: cannot write, no longer writing it: %s", self.path, ex)
            self._close_quietly()

    def close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            file.close()

    def _close_quietly(self) -> None:
        file, self._file = self._file, None
        if file is None:
            return
        try:
            file.close()
        except OSError as ex:
            log.debug("task log %s: close failed after a write error: %s", self.path, ex)


def _private_opener(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


class NullTaskLog:
    """What ``TaskLogFiles.open`` returns when local task logs are off."""

    path = None

    def write_lines(self, lines: typing.Iterable[str]) -> None:
        pass

    def close(self) -> None:
        pass


class TaskLogFiles:
    """``<folder>/task-<task id>.txt`` per task, keeping the newest ``keep``.

    Disabled when ``folder`` is empty.  Retention runs when a file is opened,
    and only ever deletes regular files named ``task-*.txt``.
    """

    def __init__(self, folder: str, keep: int):
        self.folder = folder
        self.keep = max(1, int(keep))

    @property
    def enabled(self) -> bool:
        return bool(self.folder)

    def path_for(self, task_id: str) -> str:
        # Task ids come from the network: never let one name a path elsewhere.
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", str(task_id)) or "_"
        return os.path.join(self.folder, f"{TASK_LOG_PREFIX}{safe}{TASK_LOG_SUFFIX}")

    def open(self, task_id: str) -> TaskLog | NullTaskLog:
        if not self.enabled:
            return NullTaskLog()
        path = self.path_for(task_id)
        try:
            self._make_folder()
            handle = TaskLog(path)
            # Appending does not touch the mtime: a task run again counts as newest.
            os.utime(path)
        except OSError as ex:
            log.warning("cannot keep a local log of task %s in %s: %s", task_id, self.folder, ex)
            return NullTaskLog()
        self.prune(exclude=path)
        return handle

    def _make_folder(self) -> None:
        if not os.path.isdir(self.folder):
            os.makedirs(self.folder, exist_ok=True)
            # makedirs' mode is filtered by the umask; task logs may show
            # file paths and command lines, so make it private explicitly.
            os.chmod(self.folder, 0o700)

    def task_files(self) -> list[tuple[float, str]]:
        """(mtime, path) of every task log file, newest first."""
        found = []
        with os.scandir(self.folder) as entries:
            for entry in entries:
                if not (entry.name.startswith(TASK_LOG_PREFIX) and entry.name.endswith(TASK_LOG_SUFFIX)):
                    continue
                if entry.is_file(follow_symlinks=False):
                    found.append((entry.stat(follow_symlinks=False).st_mtime, entry.path))
        found.sort(reverse=True)
        return found

    def prune(self, exclude: str | None = None) -> list[str]:
        """Delete the oldest task log files beyond ``keep``; returns them."""
        try:
            files = self.task_files()
        except OSError as ex:
            log.warning("cannot list task logs in %s: %s", self.folder, ex)
            return []
        # The file just opened stays, whatever its neighbours' clocks say.
        others = [path for _mtime, path in files if path != exclude]
        room = self.keep - (len(others) < len(files))
        deleted = []
        for path in others[room:]:
            try:
                os.unlink(path)
                deleted.append(path)
            except FileNotFoundError:
                pass  # already gone: that is what we wanted
            except OSError as ex:
                log.warning("cannot delete old task log %s: %s", path, ex)
        if deleted:
            log.debug("deleted %d old task log(s) from %s", len(deleted), self.folder)
        return deleted


class SafeFormatter(logging.Formatter):
    """Every argument of a log call escaped (``fworker.safetext``): a task name
    with a newline in it must not forge a line of the worker's log."""

    def format(self, record: logging.LogRecord) -> str:
        if record.args:
            record = copy.copy(record)  # other handlers see the record as it was
            record.args = safetext.escaped_args(record.args)
        return super().format(record)


def banner(settings: Settings, version: str, worker_id: str | None, queue_path: str,
           tools: typing.Sequence[tuple[str, str]] = (), protocol: str = "") -> str:
    """The start-up banner: what this worker is and where it talks to, and
    ``tools``, (name, text) rows on the tools it found and the task types it
    leaves out (``fworker.tools.Capabilities.rows``), and ``protocol``, the
    dialect chosen and the Manager's version (shown when given).
    Never contains a secret, not even a password inside manager_url."""
    rows = [
        ("Manager", safetext.mask_url(settings.manager_url or "(discovered on the network)")),
        *([("protocol", protocol)] if protocol else []),
        ("worker id", worker_id or "(not registered yet)"),
        ("nickname", settings.effective_nickname()),
        ("task types", " ".join(settings.task_types)),
        *tools,
        ("update queue", queue_path),
        ("lock file", statefiles.lock_path(queue_path)),
        ("log file", settings.log_file or "stderr"),
    ]
    task_logs = settings.task_log_folder
    if task_logs:
        rows.append(("task logs", f"{task_logs} (newest {settings.task_log_keep} kept)"))
    port = settings.metrics_port
    rows.append(("metrics", f"http://{settings.metrics_host}:{port}/metrics" if port else "off"))
    width = max(len(name) for name, _ in rows)
    lines = [f"fworker {version}"]
    lines += [f"  {name + ':':<{width + 1}} {safetext.printable(value)}" for name, value in rows]
    return safetext.Trusted("\n".join(lines))
