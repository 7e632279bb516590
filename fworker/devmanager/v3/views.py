"""Plain HTML pages of the Flamenco 3 development Manager, built with the 2.x
pages' helpers: ``/`` lists workers, jobs, tasks and the requests that broke
the document; ``/dev/view/tasks/{id}`` shows one task with its updates and log."""
import typing

from ..common import Row
from ..views import (
    TASK_HEADERS,
    _text,
    jobs_section,
    overview_page,
    task_cells,
    task_page,
    worker_cells,
    worker_headers,
)
from ..web import Request, Response
from .dispatch import Dispatcher
from .roster import Roster


class Views:
    def __init__(self, roster: Roster, dispatcher: Dispatcher,
                 requests_log: typing.Callable[[], list[Row]]):
        self.roster = roster
        self.dispatcher = dispatcher
        self.requests_log = requests_log

    def routes(self) -> list[tuple[str, str, typing.Callable[..., Response]]]:
        return [("GET", "/", self.overview), ("GET", "/dev/view/tasks/{task_id}", self.task_page)]

    def overview(self, request: Request) -> Response:
        workers = [worker_cells(w, "name") for w in self.roster.workers_view()]
        names = {w["id"]: w["name"] or w["id"] for w in self.roster.store.workers()}
        tasks = [task_cells(t, names) + [_text(f"{t['steps_completed']}/{t['steps_total']}")]
                 for t in self.dispatcher.store.tasks()]
        invalid = [[_text(r["seq"]), _text(r["method"]), _text(r["path"]), _text(r["status"]),
                    _text(r["error"])] for r in self.requests_log() if not r["valid"]]
        return overview_page("Flamenco 3 development Manager",
                             "<p>Flamenco 3 worker API (api/v3)</p>", [
            ("Workers", worker_headers("name"), workers),
            jobs_section(self.dispatcher),
            ("Tasks", TASK_HEADERS + ["steps"], tasks),
            ("Requests that broke the document", ["#", "method", "path", "status", "problem"],
             invalid)])

    def task_page(self, request: Request, task_id: str) -> Response:
        return task_page(self.dispatcher, task_id)
