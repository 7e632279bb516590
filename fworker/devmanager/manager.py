"""DevManager: the development Manager as one object, for tests and demos.

It wires the Store, the rules (Roster for workers, Dispatcher for tasks),
the WSGI app and the server together, runs the timeout watcher, and offers
the Python API that tests use to drive and inspect the Manager.  ManagerBase
holds what the Flamenco 3 one (v3/manager.py) shares with it.
"""
import logging
import os
import typing

import gevent

from .app import App
from .common import Row
from .dispatch import Dispatcher, DispatcherBase
from .liveness import Liveness
from .roster import Roster, RosterBase
from .server import NoDelayWSGIServer, make_server
from .store import Store
from .web import WSGIApp

logger = logging.getLogger(__name__)

# How often the watcher looks for silent workers and tasks, at most; it looks
# more often with small timeouts, so that tests with tiny ones stay quick.
_MAX_WATCH_INTERVAL = 5.0
_MIN_WATCH_INTERVAL = 0.01
# Seconds that stop() lets requests being served finish.
_STOP_GRACE = 0.1


class ManagerBase:
    """What the development Managers of both generations share: serving in greenlets,
    the watcher of silent workers and tasks, and the Python API over the store, roster
    and dispatcher that each generation's __init__ sets up (after calling _set_up)."""

    # Each generation declares its own classes of these.
    store: Store
    roster: RosterBase
    dispatcher: DispatcherBase
    app: WSGIApp

    def _set_up(self, host: str, port: int, worker_timeout: float, task_timeout: float) -> None:
        self.host = host
        self.worker_timeout = worker_timeout
        self._requested_port = port
        self._server: NoDelayWSGIServer | None = None
        self._watcher: gevent.Greenlet[[], None] | None = None
        self.port: int | None = None
        # The watcher looks four times per shortest timeout, within bounds.
        self._watch_interval = max(_MIN_WATCH_INTERVAL,
                                   min(_MAX_WATCH_INTERVAL, min(worker_timeout, task_timeout) / 4))

    def _title(self) -> str:
        """How the log line of start() names this Manager."""
        raise NotImplementedError

    # Running

    def start(self) -> typing.Self:
        """Start serving in the background (greenlets); returns self."""
        if self._server is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        server = self._server = make_server(self.host, self._requested_port, self.app)
        server.start()
        self.port = server.server_port
        self._watcher = gevent.spawn(self._watch_timeouts)
        logger.info("%s serving on %s (database %s)", self._title(), self.url, self.store.path)
        return self

    def stop(self) -> None:
        """Stop serving; the Python API stays usable for inspection."""
        if self._watcher is not None:
            self._watcher.kill()
            self._watcher = None
        if self._server is not None:
            # In-flight requests take milliseconds; what remains after this
            # grace is mostly idle keep-alive connections, which are closed.
            self._server.stop(timeout=_STOP_GRACE)
            self._server = None
        self._close()

    def _close(self) -> None:
        self.store.close()

    def __enter__(self) -> typing.Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def _watch_timeouts(self) -> None:
        while True:
            gevent.sleep(self._watch_interval)
            try:
                self.check_timeouts()
            except Exception:  # keep watching: one bad round must not end timeouts for good
                logger.exception("Checking for timed-out workers and tasks failed")

    def check_timeouts(self) -> None:
        """Time out silent workers and fail silent tasks (the watcher calls this)."""
        raise NotImplementedError

    # Jobs and tasks

    def submit_job(self, job: Row) -> Row:
        """Queue a job (format: see the generation's jobs.py); {"job_id", "task_ids"}."""
        return self.dispatcher.submit_job(job)

    def job(self, job_id: str) -> Row:
        return self.dispatcher.job_view(job_id)

    def jobs(self) -> list[Row]:
        return self.dispatcher.jobs_view()

    def task(self, task_id: str) -> Row:
        return self.dispatcher.task_view(task_id)

    def tasks(self, job_id: str | None = None) -> list[Row]:
        return self.dispatcher.tasks_view(job_id)

    def task_updates(self, task_id: str) -> list[Row]:
        """Every accepted TaskUpdate body of the task, as received, in order."""
        return self.store.task_updates(task_id)

    def task_log(self, task_id: str) -> str:
        return self.store.task_log(task_id)

    def cancel_task(self, task_id: str) -> str:
        return self.dispatcher.cancel_task(task_id)

    def cancel_job(self, job_id: str) -> None:
        self.dispatcher.cancel_job(job_id)

    def reassign_task(self, task_id: str, other_worker_id: str = "") -> None:
        self.dispatcher.reassign_task(task_id, other_worker_id)

    def forget_task(self, task_id: str) -> None:
        self.dispatcher.forget_task(task_id)

    # Workers

    def workers(self) -> list[Row]:
        return self.roster.workers_view()

    def worker(self, worker_id: str) -> Row:
        return self.roster.worker_view(worker_id)

    def request_status(self, worker_id: str, status: str, lazy: bool = False) -> None:
        self.roster.request_status(worker_id, status, lazy)

    def forget_worker(self, worker_id: str) -> None:
        self.roster.forget(worker_id)

    @property
    def acks(self) -> list[tuple[str, str]]:
        return [(row["worker"], row["status"]) for row in self.store.acks()]


class DevManager(ManagerBase):
    """A Flamenco Manager 2.x worker API on 127.0.0.1, state in SQLite."""

    roster: Roster
    dispatcher: Dispatcher
    app: App

    def __init__(self, db_path: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 0,
                 registration_secret: str | None = None, worker_timeout: float = 60.0,
                 task_ping_timeout: float = 600.0,
                 variables: dict[str, dict[str, str]] | None = None):
        self._set_up(host, port, worker_timeout, task_ping_timeout)
        self.task_ping_timeout = task_ping_timeout
        self.store = Store(db_path)
        self.dispatcher = Dispatcher(self.store, Liveness(), variables)
        self.roster = Roster(self.store, self.dispatcher, Liveness(), registration_secret)
        self.app = App(self.roster, self.dispatcher)

    def _title(self) -> str:
        return f"Development Manager {self.store.manager_id}"

    def check_timeouts(self) -> None:
        self.roster.time_out_silent_workers(self.worker_timeout)
        self.dispatcher.fail_silent_tasks(self.task_ping_timeout)

    # Records

    @property
    def requests_log(self) -> list[tuple[str, str, int]]:
        """(method, path, status) of the last 10,000 requests served."""
        return list(self.app.requests_log)

    def output_produced(self, worker_id: str | None = None) -> list[list[str]]:
        filters = {"worker": worker_id} if worker_id else {}
        return [row["paths"] for row in self.store.outputs(**filters)]
