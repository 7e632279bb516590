"""Plain HTML pages for a human watching the development Manager.

``/`` lists workers, jobs and tasks; ``/dev/view/tasks/{id}`` shows one task
with its updates and log.  Every value is escaped with html.escape: task
names, logs and activities come from job files and workers.
"""
import html
import json
import typing

from . import common
from .dispatch import Dispatcher
from .roster import Roster
from .web import Request, Response, html_response, text_response

_STYLE = ("body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
          "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}"
          "pre{background:#f4f4f4;padding:.5em;white-space:pre-wrap}")


def _page(title: str, body: str, refresh: bool = True) -> str:
    meta = '<meta http-equiv="refresh" content="5">' if refresh else ""
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">{meta}"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
            f"<body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")


def _table(headers: list[str], rows: list[list[str]]) -> str:
    """Cells are HTML already (escape values with _text or build links with _link)."""
    if not rows:
        return "<p>None.</p>"
    head = "".join(f"<th>{html.escape(header)}</th>" for header in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>\n"
                   for row in rows)
    return f"<table><tr>{head}</tr>\n{body}</table>"


def _text(value: typing.Any) -> str:
    return html.escape(str(value))


def _task_link(task_id: str) -> str:
    return f'<a href="/dev/view/tasks/{html.escape(task_id)}">{html.escape(task_id)}</a>'


class Views:
    def __init__(self, roster: Roster, dispatcher: Dispatcher):
        self.roster = roster
        self.dispatcher = dispatcher

    def routes(self) -> list[tuple[str, str, typing.Callable[..., Response]]]:
        return [("GET", "/", self.overview), ("GET", "/dev/view/tasks/{task_id}", self.task_page)]

    def overview(self, request: Request) -> Response:
        workers = [[_text(w["id"]), _text(w["nickname"]), _text(w["platform"]),
                    _text(", ".join(w["supported_task_types"])), _text(w["status"]),
                    _text(w["status_requested"] + (" (lazy)" if w["lazy_status_request"] else "")),
                    _text(w["last_seen"]), _text(w["software"])]
                   for w in self.roster.workers_view()]
        jobs = [[_text(j["id"]), _text(j["name"]), _text(j["job_type"]), _text(j["priority"]),
                 _text(j["status"])] for j in self.dispatcher.jobs_view()]
        nicknames = {w["id"]: w["nickname"] or w["id"] for w in self.roster.store.workers()}
        tasks = [[_task_link(t["id"]), _text(t["name"]), _text(t["task_type"]),
                  _text(t["status"]), _text(nicknames.get(t["worker"], t["worker"])),
                  _text(t["activity"]), _text(f"{t['task_progress_percentage']}%")]
                 for t in self.dispatcher.store.tasks()]
        body = "\n".join([
            f"<p>Manager {_text(self.dispatcher.store.manager_id)}</p>",
            "<h2>Workers</h2>", _table(["id", "nickname", "platform", "task types", "status",
                                        "requested", "last seen", "software"], workers),
            "<h2>Jobs</h2>", _table(["id", "name", "type", "priority", "status"], jobs),
            "<h2>Tasks</h2>", _table(["id", "name", "type", "status", "worker", "activity",
                                      "progress"], tasks),
        ])
        return html_response(_page("Flamenco development Manager", body))

    def task_page(self, request: Request, task_id: str) -> Response:
        try:
            task = self.dispatcher.task_view(task_id)
        except common.NotFound as ex:
            return text_response(404, str(ex))
        fields = [[_text(key), _text(value)] for key, value in task.items() if key != "log"]
        updates = [[_text(row["seq"]), _text(row["received"]), _text(row["worker"]),
                    f"<pre>{_text(json.dumps(row['body'], indent=1))}</pre>"]
                   for row in self.dispatcher.store.task_update_rows(task_id)]
        body = "\n".join([
            '<p><a href="/">All workers, jobs and tasks</a></p>',
            _table(["field", "value"], fields),
            "<h2>Updates</h2>", _table(["#", "received", "worker", "body"], updates),
            "<h2>Log</h2>", f"<pre>{_text(task['log'])}</pre>",
        ])
        return html_response(_page(f"Task {task['name']}", body))
