"""Plain HTML pages of the Flamenco 3 development Manager, built with the 2.x
pages' helpers: ``/`` lists workers, jobs, tasks and the requests that broke
the document; ``/dev/view/tasks/{id}`` shows one task with its updates and log."""
import typing

from ..common import Row
from ..views import _page, _table, _task_link, _text, task_page
from ..web import Request, Response, html_response
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
        workers = [[_text(w["id"]), _text(w["name"]), _text(w["platform"]),
                    _text(", ".join(w["supported_task_types"])), _text(w["status"]),
                    _text(w["status_requested"] + (" (lazy)" if w["lazy_status_request"] else "")),
                    _text(w["last_seen"]), _text(w["software"])]
                   for w in self.roster.workers_view()]
        jobs = [[_text(j["id"]), _text(j["name"]), _text(j["job_type"]), _text(j["priority"]),
                 _text(j["status"])] for j in self.dispatcher.jobs_view()]
        names = {w["id"]: w["name"] or w["id"] for w in self.roster.store.workers()}
        tasks = [[_task_link(t["id"]), _text(t["name"]), _text(t["task_type"]),
                  _text(t["status"]), _text(names.get(t["worker"], t["worker"])),
                  _text(t["activity"]), _text(f"{t['steps_completed']}/{t['steps_total']}")]
                 for t in self.dispatcher.store.tasks()]
        invalid = [[_text(r["seq"]), _text(r["method"]), _text(r["path"]), _text(r["status"]),
                    _text(r["error"])] for r in self.requests_log() if not r["valid"]]
        body = "\n".join([
            "<p>Flamenco 3 worker API (api/v3)</p>",
            "<h2>Workers</h2>", _table(["id", "name", "platform", "task types", "status",
                                        "requested", "last seen", "software"], workers),
            "<h2>Jobs</h2>", _table(["id", "name", "type", "priority", "status"], jobs),
            "<h2>Tasks</h2>", _table(["id", "name", "type", "status", "worker", "activity",
                                      "steps"], tasks),
            "<h2>Requests that broke the document</h2>",
            _table(["#", "method", "path", "status", "problem"], invalid),
        ])
        return html_response(_page("Flamenco 3 development Manager", body))

    def task_page(self, request: Request, task_id: str) -> Response:
        return task_page(self.dispatcher, task_id)
