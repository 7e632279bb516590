"""Every file of a worker's state on disk, named in one place.

A worker's state is what it keeps between runs or must not share with another
worker process: its credentials, the durable update queue, the unlinked spool
files of child output beside the queue, the owner mark its children carry (see
``fworker.leftovers``), its own log and its local task logs, and the lock file
that keeps a second process away from all of these (``fworker.statelock``).

Names depend on two keys:

- the *instance*: several workers on one machine (one per GPU) each have their
  own state.  The default instance (``DEFAULT_INSTANCE``) uses the names
  workers have always used, so existing installations keep their credentials
  and queue.  A named instance's credentials get ``@NAME`` before their
  extension (``for_instance``); which of its configured paths get it too is
  decided in one place, ``fworker.instance.settle``, the one that knows
  where each value was set.  ``StateFiles.of`` takes the paths of the
  settings as they are (two instances configured onto one queue are refused
  by the lock rather than silently merged).
- the Manager *protocol*: Flamenco 2.x and 3.x Managers issue different
  credentials, so each protocol has a credentials file of its own and
  switching Managers never sends one's secret to the other.

This module only names files: it creates, reads and locks nothing, and
imports nothing of the worker, so every layer can use it.
"""
from __future__ import annotations

import dataclasses
import enum
import os
import re
import typing

from fworker.errors import ConfigError

DEFAULT_INSTANCE = ""

# Built-in defaults of the path settings; config's settings table must agree
# (tests/test_statefiles.py checks that it does).
QUEUE_FILE = "flamenco-worker.db"
LOG_FILE = ""  # empty: the worker logs to stderr
TASK_LOG_FOLDER = ""  # empty: no local task logs

LOCK_SUFFIX = ".lock"

# Letters, digits and a few separators: the name ends up in file names and
# service unit names, so nothing that could climb out of a folder.
_INSTANCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")


class Protocol(enum.Enum):
    """The generation of the Manager a worker talks to."""

    V2 = "2"  # Flamenco Manager 2.x
    V3 = "3"  # Flamenco Manager 3.x (api/v3)


# Credentials file names in the home folder, per protocol.  The 2.x file is
# also a configuration file that config.load reads (it always was).
_CREDENTIALS = {
    Protocol.V2: ".flamenco-worker.cfg",
    Protocol.V3: ".flamenco-worker-v3.cfg",
}


def check_instance(name: str) -> str:
    """``name`` if it can name an instance; ConfigError naming the problem otherwise."""
    if name == DEFAULT_INSTANCE or _INSTANCE_NAME.match(name):
        return name
    raise ConfigError(f"instance name {name!r}: use up to 63 letters, digits, '_', '-' or '.', "
                      "starting with a letter or digit")


def for_instance(path: str, instance: str) -> str:
    """``path`` as the file of ``instance``: unchanged for the default instance,
    otherwise with ``@instance`` before the extension (``queue@gpu0.db``)."""
    if instance == DEFAULT_INSTANCE or not path:
        return path
    folder, name = os.path.split(path)
    stem, ext = os.path.splitext(name)  # ".flamenco-worker.cfg": (".flamenco-worker", ".cfg")
    return os.path.join(folder, f"{stem}@{check_instance(instance)}{ext}")


def home() -> str:
    return os.path.expanduser("~")


def credentials_path(instance: str = DEFAULT_INSTANCE, protocol: Protocol = Protocol.V2) -> str:
    """Where the worker keeps the id and secret a Manager of ``protocol`` gave it."""
    return for_instance(os.path.join(home(), _CREDENTIALS[protocol]), instance)


def credentials_beside(v2_path: str, instance: str = DEFAULT_INSTANCE) -> str:
    """The Manager 3.x credentials file that goes with the 2.x one at ``v2_path``:
    ``instance``'s own (``StateFiles.credentials_v3``) when ``v2_path`` is its 2.x
    file, else a sibling of a file a program named (the embedding API, tests):
    ``creds.cfg`` -> ``creds-v3.cfg``."""
    if v2_path == credentials_path(instance, Protocol.V2):
        return credentials_path(instance, Protocol.V3)
    stem, ext = os.path.splitext(v2_path)
    return f"{stem}-v{Protocol.V3.value}{ext or '.cfg'}"


def lock_path(queue: str) -> str:
    """The lock file of the worker whose queue is ``queue``: beside it, so that
    whatever shares a queue (one instance started twice, two instances
    configured onto one file) shares the lock, and only one of them runs."""
    return os.path.abspath(queue) + LOCK_SUFFIX


def spool_dir(queue: str) -> str:
    """Where child output waiting to be handled may spill (``fworker.spool``):
    beside the queue, on the worker's own disk rather than a tmpfs /tmp that
    costs RAM."""
    return os.path.dirname(os.path.abspath(queue))


def owner_mark(queue: str) -> str:
    """The mark every child of the worker carries in its environment
    (``fworker.leftovers``): its queue file, which no two running workers share
    (the lock sees to that)."""
    return os.path.abspath(queue)


@dataclasses.dataclass(frozen=True)
class StateFiles:
    """Every file of one worker's state, with absolute paths where a path is
    relative to the folder the worker started in.  The paths of the settings
    are taken as they are: ``fworker.instance.settle`` gives a named
    instance's settings their own names first, and ``of`` on settled settings
    gives the same files again."""

    instance: str
    queue: str
    credentials_v2: str
    credentials_v3: str
    log_file: str  # empty: stderr
    task_log_folder: str  # empty: off

    @classmethod
    def of(cls, settings: typing.Any, instance: str = DEFAULT_INSTANCE) -> StateFiles:
        """The state files of a worker with these settings (``log_file``,
        ``task_log_folder``: empty when off)."""
        check_instance(instance)
        return cls(
            instance=instance,
            queue=os.path.abspath(settings.task_update_queue_db),
            credentials_v2=credentials_path(instance, Protocol.V2),
            credentials_v3=credentials_path(instance, Protocol.V3),
            log_file=_absolute(settings.log_file),
            task_log_folder=_absolute(settings.task_log_folder),
        )

    def credentials(self, protocol: Protocol) -> str:
        return self.credentials_v3 if protocol is Protocol.V3 else self.credentials_v2

    @property
    def lock(self) -> str:
        return lock_path(self.queue)

    @property
    def spool_dir(self) -> str:
        return spool_dir(self.queue)

    @property
    def owner_mark(self) -> str:
        return owner_mark(self.queue)

    def named(self) -> dict[str, str]:
        """What each file is, for people (the banner, ``--check-config``, docs);
        an empty value is a file not in use."""
        return {
            "credentials (Manager 2.x)": self.credentials_v2,
            "credentials (Manager 3.x)": self.credentials_v3,
            "update queue": self.queue,
            "lock": self.lock,
            "output spool folder": self.spool_dir,
            "log file": self.log_file,
            "task log folder": self.task_log_folder,
        }

    def protected(self) -> dict[str, str]:
        """What no task may delete, overwrite or move (issue 15 case 11e): every
        file of ``paths()`` and the task log folder, by what each is."""
        named = {what: path for what, path in self.named().items() if path and what != "output spool folder"}
        queue = named["update queue"]
        named.update({f"update queue ({suffix})": queue + suffix for suffix in ("-wal", "-shm", "-journal")})
        return named

    def owns(self, path: str) -> str | None:
        """Which of the worker's own files ``path`` is, or holds (a folder with
        the queue in it), as given or with symlinks resolved; None if none."""
        return owns(path, self.protected())

    def paths(self) -> list[str]:
        """Every path above that is in use: what a task must never delete or
        overwrite (the queue's SQLite side files included)."""
        queue_side = [self.queue + suffix for suffix in ("-wal", "-shm", "-journal")]
        files = [self.credentials_v2, self.credentials_v3, self.queue, *queue_side, self.lock, self.log_file]
        return [path for path in files if path]


def owns(path: str, protected: typing.Mapping[str, str]) -> str | None:
    """``protected`` maps what a file is to its path (``StateFiles.protected``):
    the description and path of the one ``path`` is or contains, or None."""
    candidates = {os.path.normcase(p) for p in (os.path.abspath(path), os.path.realpath(path))}
    for what, own in protected.items():
        for own_path in {os.path.normcase(p) for p in (os.path.abspath(own), os.path.realpath(own))}:
            for candidate in candidates:
                try:
                    if os.path.commonpath([candidate, own_path]) == candidate:
                        return f"{what} {own}"
                except ValueError:  # different drives on Windows
                    continue
    return None


def _absolute(path: str) -> str:
    return os.path.abspath(path) if path else path
