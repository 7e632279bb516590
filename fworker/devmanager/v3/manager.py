"""DevManager3: the Flamenco 3 development Manager as one object, for tests
and the demo; the same shape as the 2.x DevManager (start/stop, a Python API to
drive and inspect it, the state in one SQLite file)."""
import logging

import gevent

from ..liveness import Liveness
from ..manager import DevManager
from ..server import make_server
from .app import App
from .devapi import DevAPI
from .dispatch import Dispatcher
from .protocol import Previews, WorkerAPI
from .roster import Roster
from .store import V3Store
from .views import Views

logger = logging.getLogger(__name__)

_MAX_WATCH_INTERVAL = 5.0
_MIN_WATCH_INTERVAL = 0.01
_STOP_GRACE = 0.1
VERSION = "3.9"


class DevManager3:
    """A Flamenco Manager 3 worker API (api/v3) on 127.0.0.1, state in SQLite.

    ``worker_timeout`` (real default 60 s) puts a silent worker in ``error`` and
    re-queues its task; ``task_timeout`` (600 s) fails an untouched active task;
    ``preview_delay`` is how long each accepted image holds one of the three places
    of the thumbnail queue (more than three at once: 429).
    """

    def __init__(self, db_path, host: str = "127.0.0.1", port: int = 0,
                 worker_timeout: float = 60.0, task_timeout: float = 600.0,
                 preview_delay: float = 0.05,
                 variables: dict[str, dict[str, str]] | None = None,
                 version: str = VERSION, name: str = "fworker development Manager"):
        self.host = host
        self.worker_timeout = worker_timeout
        self.task_timeout = task_timeout
        self.store = V3Store(db_path)
        self.dispatcher = Dispatcher(self.store, Liveness(), variables)
        self.roster = Roster(self.store, self.dispatcher, Liveness())
        self.previews = Previews(preview_delay)
        version_doc = {"version": f"{version} (fworker dev)", "shortversion": version,
                       "name": name, "git": "fworker-dev"}
        api = WorkerAPI(self.roster, self.dispatcher, self.previews, version_doc)
        dev = DevAPI(self.roster, self.dispatcher, self.previews,
                     lambda: self.requests, lambda: self.app.faults)
        views = Views(self.roster, self.dispatcher, lambda: self.requests)
        self.app = App(self.roster, api, dev.routes() + views.routes())
        self._requested_port = port
        self._server = None
        self._watcher: gevent.Greenlet | None = None
        self.port: int | None = None

    def start(self) -> "DevManager3":
        if self._server is not None:
            raise RuntimeError("DevManager3 already started")
        self._server = make_server(self.host, self._requested_port, self.app)
        self._server.start()
        self.port = self._server.server_port
        self._watcher = gevent.spawn(self._watch_timeouts)
        logger.info("Flamenco 3 development Manager serving on %s (database %s)",
                    self.url, self.store.path)
        return self

    def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.kill()
            self._watcher = None
        if self._server is not None:
            self._server.stop(timeout=_STOP_GRACE)
            self._server = None
        self.previews.stop()
        self.store.close()

    def __enter__(self) -> "DevManager3":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    url = DevManager.url

    def _watch_timeouts(self) -> None:
        interval = min(self.worker_timeout, self.task_timeout) / 4
        interval = max(_MIN_WATCH_INTERVAL, min(_MAX_WATCH_INTERVAL, interval))
        while True:
            gevent.sleep(interval)
            try:
                self.check_timeouts()
            except Exception:  # keep watching: one bad round must not end timeouts for good
                logger.exception("Checking for timed-out workers and tasks failed")

    def check_timeouts(self) -> None:
        self.roster.time_out_silent_workers(self.worker_timeout)
        self.dispatcher.fail_untouched_tasks(self.task_timeout)

    # Jobs and tasks

    def submit_job(self, job: dict) -> dict:
        """Queue a job (format and builders: v3/jobs.py); {"job_id", "task_ids"}."""
        return self.dispatcher.submit_job(job)

    def job(self, job_id: str) -> dict:
        return self.dispatcher.job_view(job_id)

    def jobs(self) -> list[dict]:
        return self.dispatcher.jobs_view()

    def task(self, task_id: str) -> dict:
        return self.dispatcher.task_view(task_id)

    def tasks(self, job_id: str | None = None) -> list[dict]:
        return self.dispatcher.tasks_view(job_id)

    def task_updates(self, task_id: str) -> list[dict]:
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

    def delete_job(self, job_id: str) -> None:
        self.dispatcher.delete_job(job_id)

    # Workers

    def workers(self) -> list[dict]:
        return self.roster.workers_view()

    def worker(self, worker_id: str) -> dict:
        return self.roster.worker_view(worker_id)

    def request_status(self, worker_id: str, status: str, lazy: bool = False) -> None:
        self.roster.request_status(worker_id, status, lazy)

    def forget_worker(self, worker_id: str) -> None:
        self.roster.forget(worker_id)

    # Records and faults

    @property
    def requests(self) -> list[dict]:
        """Every API request (the last 10,000): seq, method, path, operation, status,
        valid, error (what broke the document), worker."""
        return list(self.app.requests_log)

    def invalid_requests(self) -> list[dict]:
        return [row for row in self.app.requests_log if not row["valid"]]

    @property
    def acks(self) -> list[tuple[str, str]]:
        return [(row["worker"], row["status"]) for row in self.store.acks()]

    def previews_received(self, job_id: str | None = None) -> list[dict]:
        return self.store.previews(**({"job": job_id} if job_id else {}))

    def inject_busy(self, count: int = 1, path: str = "/api/v3/worker/",
                    retry_after: int = 1) -> None:
        """The next count API requests under path answer 503 with Retry-After."""
        self.app.faults.inject(count, path, retry_after)

