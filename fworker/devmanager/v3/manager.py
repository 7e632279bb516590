"""DevManager3: the Flamenco 3 development Manager as one object, for tests
and the demo; the same shape as the 2.x DevManager (start/stop, a Python API to
drive and inspect it, the state in one SQLite file)."""
import os

from ..common import Row
from ..liveness import Liveness
from ..manager import ManagerBase
from .app import App
from .devapi import DevAPI
from .dispatch import Dispatcher
from .protocol import Previews, WorkerAPI
from .roster import Roster
from .store import V3Store
from .views import Views

VERSION = "3.9"


class DevManager3(ManagerBase):
    """A Flamenco Manager 3 worker API (api/v3) on 127.0.0.1, state in SQLite.

    ``worker_timeout`` (real default 60 s) puts a silent worker in ``error`` and
    re-queues its task; ``task_timeout`` (600 s) fails an untouched active task;
    ``preview_delay`` is how long each accepted image holds one of the three places
    of the thumbnail queue (more than three at once: 429).
    """

    store: V3Store
    roster: Roster
    dispatcher: Dispatcher
    app: App

    def __init__(self, db_path: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 0,
                 worker_timeout: float = 60.0, task_timeout: float = 600.0,
                 preview_delay: float = 0.05,
                 variables: dict[str, dict[str, str]] | None = None,
                 version: str = VERSION, name: str = "fworker development Manager"):
        self._set_up(host, port, worker_timeout, task_timeout)
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

    def _title(self) -> str:
        return "Flamenco 3 development Manager"

    def _close(self) -> None:
        self.previews.stop()
        super()._close()

    def check_timeouts(self) -> None:
        self.roster.time_out_silent_workers(self.worker_timeout)
        self.dispatcher.fail_untouched_tasks(self.task_timeout)

    def delete_job(self, job_id: str) -> None:
        self.dispatcher.delete_job(job_id)

    # Records and faults

    @property
    def requests(self) -> list[Row]:
        """Every API request (the last 10,000): seq, method, path, operation, status,
        valid, error (what broke the document), worker."""
        return list(self.app.requests_log)

    def invalid_requests(self) -> list[Row]:
        return [row for row in self.app.requests_log if not row["valid"]]

    def previews_received(self, job_id: str | None = None) -> list[Row]:
        return self.store.previews(**({"job": job_id} if job_id else {}))

    def inject_busy(self, count: int = 1, path: str = "/api/v3/worker/",
                    retry_after: int = 1) -> None:
        """The next count API requests under path answer 503 with Retry-After."""
        self.app.faults.inject(count, path, retry_after)

