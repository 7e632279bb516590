"""The public Python API: run a worker inside another program (docs/API.md).

Re-exported from ``fworker``; everything else in the package is internal.
The embedding program must ``import fworker`` before anything that imports
``socket``, ``ssl`` or ``threading``, because the worker runs under gevent.
"""
from __future__ import annotations

import logging
import os
import typing

import gevent

from fworker import config
from fworker.commands import base
from fworker.errors import ConfigError
from fworker.events import Callback

if typing.TYPE_CHECKING:
    from fworker.worker import Worker

log = logging.getLogger(__name__)

CommandClass = typing.TypeVar("CommandClass", bound=type[base.Command])


def load_settings(files: typing.Iterable[str | os.PathLike[str]] = (), **overrides: typing.Any) -> config.Settings:
    """The worker's settings: the defaults, then each file of ``files`` in
    order (each must exist), then ``overrides`` (setting name = value, as
    Python values or as the strings a file would hold).

    Unlike the command line this reads no file unless it is listed.  Raises
    ``fworker.ConfigError`` naming the file, setting and value that are wrong.
    """
    paths = []
    for file in files:
        path = os.path.abspath(os.fspath(file))
        if not os.path.isfile(path):
            raise ConfigError(f"configuration file {path}: not found")
        paths.append(path)
    named = {config.LEGACY_NAMES.get(key, key): value for key, value in overrides.items()}
    unknown = sorted(key for key in named if key not in config.BY_NAME)
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
    return config.load(files=paths, overrides=named)


def start_worker(settings: config.Settings, *, credentials_path: str | os.PathLike[str] | None = None,
                 single: bool = False) -> WorkerHandle:
    """Start a worker in a new greenlet of this process and return its handle.

    Plug-in commands are loaded first; task types that need a plug-in which
    failed to load are not advertised (``ConfigError`` if none is left).
    With an empty ``manager_url`` the Manager is looked for on the local
    network first, as the command line does.  ``settings`` cannot change:
    the worker gets a new value with these adjustments.
    ``credentials_path``: the file the worker stores its id and secret in
    after registering (None: not stored; list that file in ``load_settings``
    to sign on with them next time).  ``single``: stop after one task.

    The worker greenlet first runs when the caller next yields to gevent, so
    subscribing right after this call sees every event.  No signal handlers
    and no logging configuration are installed: both belong to the program.
    """
    from fworker.wiring import build_worker  # late: keeps ``import fworker`` cheap

    path = os.fspath(credentials_path) if credentials_path is not None else None
    return WorkerHandle(build_worker(settings, credentials_path=path, single=single))


def register_command(cls: CommandClass) -> CommandClass:
    """Class decorator: make a ``fworker.Command`` subclass available under
    its ``name`` to workers in this process.  Installed packages use the
    ``fworker.commands`` entry point instead.  Raises ``TypeError`` for a
    class that is not a Command, ``DuplicateCommand`` for a taken name."""
    base.register(cls)
    return cls


class WorkerHandle:
    """A worker running in a greenlet of this process (from ``start_worker``).

    Call its methods from the thread that runs the gevent hub (normally the
    main thread)."""

    def __init__(self, worker: Worker):
        self._worker = worker
        self._error: BaseException | None = None
        self._greenlet = gevent.spawn(self._run)

    def _run(self) -> int | None:
        try:
            return self._worker.run()
        except Exception as ex:  # kept for wait(), which raises it in the caller's greenlet
            log.exception("the embedded worker stopped with an error")
            self._error = ex
            return None

    def subscribe(self, event: str, callback: Callback) -> None:
        """Call ``callback(event, **data)`` whenever ``event`` happens (``"*"``:
        every event; the names are ``fworker.EVENTS``).  Callbacks run in the
        worker's greenlets, so keep them short and non-blocking; an exception
        one raises is logged and never reaches the worker."""
        self._worker.events.subscribe(event, callback)

    def unsubscribe(self, callback: Callback) -> None:
        """Stop calling ``callback`` for any event."""
        self._worker.events.unsubscribe(callback)

    def stop(self, timeout: float | None = None) -> bool:
        """Shut the worker down as SIGTERM does (a running task is stopped and
        reported failed, queued updates are sent, the worker signs off) and
        wait up to ``timeout`` seconds (None: until done).  True when it has
        stopped.  Never raises; ``wait()`` reports a fatal error.  From an
        event callback use ``stop(0)``: it only requests the shutdown."""
        if not self._greenlet.ready():
            self._worker.request_shutdown("stopped by the embedding program")
            if gevent.getcurrent() is not self._greenlet:  # joining itself would never return
                self._greenlet.join(timeout)
        return self._greenlet.ready()

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait up to ``timeout`` seconds (None: for ever) for the worker to
        end (``stop()``, the Manager's shutdown request, or ``single`` after
        its task).  Its exit code (0; 5 when ``single`` and the task did not
        complete), None if still running; re-raises the error that ended it
        (``fworker.ConfigError``, a refused registration, ...)."""
        self._greenlet.join(timeout)
        if not self._greenlet.ready():
            return None
        if self._error is not None:
            raise self._error
        return self._greenlet.value

    @property
    def running(self) -> bool:
        """True until the worker has shut down."""
        return not self._greenlet.ready()

    @property
    def state(self) -> str:
        """The worker's state: starting, awake, asleep, testing, error or shutdown."""
        return self._worker.machine.state.value

    @property
    def worker_id(self) -> str:
        """The id the Manager gave this worker; empty until registered."""
        return self._worker.upstream.worker_id
