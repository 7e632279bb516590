"""Plain HTML pages for a human watching the development Manager.

``/`` lists workers (with the task each runs), jobs and tasks (with the
newest image each produced); ``/dev/view/tasks/{id}`` shows one task with its
updates, log and newest image.  Both reload themselves every few seconds.
Every value is escaped with html.escape: task names, logs and activities come
from job files and workers.

``/dev/view/outputs/{seq}/{index}`` serves one image a worker reported as
produced (output-produced row ``seq``, its path number ``index``): only
paths a worker reported, only image types a browser shows, never a path from
the request.
"""
import html
import json
import os
import typing

from . import common
from .common import Row
from .dispatch import Dispatcher, DispatcherBase
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


_IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
                ".webp": "image/webp", ".bmp": "image/bmp"}
_IMAGE_MAX = 64 * 1024 * 1024  # a preview, not an archive


def _text(value: object) -> str:
    return html.escape(str(value))


def _task_link(task_id: str) -> str:
    return f'<a href="/dev/view/tasks/{html.escape(task_id)}">{html.escape(task_id)}</a>'


def worker_cells(worker: Row, name_key: str, after_status: typing.Sequence[str] = ()) -> list[str]:
    """A worker's row of an overview: WORKER_HEADERS, ``after_status`` cells inserted
    after its status (both Managers show these; the name is in ``name_key``)."""
    requested = worker["status_requested"] + (" (lazy)" if worker["lazy_status_request"] else "")
    return [_text(worker["id"]), _text(worker[name_key]), _text(worker["platform"]),
            _text(", ".join(worker["supported_task_types"])), _text(worker["status"]),
            *after_status, _text(requested), _text(worker["last_seen"]), _text(worker["software"])]


def worker_headers(name: str, after_status: typing.Sequence[str] = ()) -> list[str]:
    return ["id", name, "platform", "task types", "status", *after_status, "requested",
            "last seen", "software"]


def task_cells(task: Row, worker_names: dict[str, str]) -> list[str]:
    """The first cells of a task's row of an overview (TASK_HEADERS)."""
    return [_task_link(task["id"]), _text(task["name"]), _text(task["task_type"]),
            _text(task["status"]), _text(worker_names.get(task["worker"], task["worker"])),
            _text(task["activity"])]


TASK_HEADERS = ["id", "name", "type", "status", "worker", "activity"]

# An overview's section: (heading, column headers, rows of HTML cells).
Section = tuple[str, list[str], list[list[str]]]


def jobs_section(dispatcher: DispatcherBase) -> Section:
    return ("Jobs", ["id", "name", "type", "priority", "status"],
            [[_text(j["id"]), _text(j["name"]), _text(j["job_type"]), _text(j["priority"]),
              _text(j["status"])] for j in dispatcher.jobs_view()])


def overview_page(title: str, intro: str, sections: typing.Sequence[Section]) -> Response:
    """A Manager's ``/``: intro (HTML) and a table per section."""
    parts = [intro]
    for heading, headers, rows in sections:
        parts += [f"<h2>{html.escape(heading)}</h2>", _table(headers, rows)]
    return html_response(_page(title, "\n".join(parts)))


def task_page(dispatcher: DispatcherBase, task_id: str,
              extra: typing.Callable[[], list[str]] = list) -> Response:
    """One task's page, for both Managers' dispatchers (``task_view`` and the
    store's ``task_update_rows``): its fields, ``extra`` sections, updates and log."""
    try:
        task = dispatcher.task_view(task_id)
    except common.NotFound as ex:
        return text_response(404, str(ex))
    fields = [[_text(key), _text(value)] for key, value in task.items() if key != "log"]
    updates = [[_text(row["seq"]), _text(row["received"]), _text(row["worker"]),
                f"<pre>{_text(json.dumps(row['body'], indent=1))}</pre>"]
               for row in dispatcher.store.task_update_rows(task_id)]
    body = "\n".join([
        '<p><a href="/">All workers, jobs and tasks</a></p>',
        _table(["field", "value"], fields),
        *extra(),
        "<h2>Updates</h2>", _table(["#", "received", "worker", "body"], updates),
        "<h2>Log</h2>", f"<pre>{_text(task['log'])}</pre>",
    ])
    return html_response(_page(f"Task {task['name']}", body))


class Views:
    def __init__(self, roster: Roster, dispatcher: Dispatcher):
        self.roster = roster
        self.dispatcher = dispatcher

    def routes(self) -> list[tuple[str, str, typing.Callable[..., Response]]]:
        return [("GET", "/", self.overview), ("GET", "/dev/view/tasks/{task_id}", self.task_page),
                ("GET", "/dev/view/outputs/{seq}/{index}", self.output_image)]

    def _newest_image(self, task_id: str) -> str | None:
        """The URL of the newest image the task's worker reported for it."""
        for row in reversed(self.roster.store.outputs(task=task_id)):
            for index in reversed(range(len(row["paths"]))):
                if os.path.splitext(row["paths"][index])[1].lower() in _IMAGE_TYPES:
                    return f"/dev/view/outputs/{row['seq']}/{index}"
        return None

    def _image_cell(self, task_id: str, height: int) -> str:
        url = self._newest_image(task_id)
        if url is None:
            return ""
        return f'<img src="{url}" alt="newest image of task {_text(task_id)}" height="{height}">'

    def output_image(self, request: Request, seq: str, index: str) -> Response:
        rows = self.roster.store.outputs(seq=int(seq)) if seq.isdigit() else []
        paths = rows[0]["paths"] if rows else []
        if not index.isdigit() or int(index) >= len(paths):
            return text_response(404, "no such produced output")
        path = paths[int(index)]
        content_type = _IMAGE_TYPES.get(os.path.splitext(path)[1].lower())
        if content_type is None:
            return text_response(404, f"{path}: not an image a browser shows")
        try:
            with open(path, "rb") as f:
                data = f.read(_IMAGE_MAX + 1)
        except OSError as ex:
            return text_response(404, f"{path}: {ex.strerror}")
        if len(data) > _IMAGE_MAX:
            return text_response(404, f"{path}: larger than {_IMAGE_MAX} bytes")
        return Response(200, data, [("Content-Type", content_type), ("Cache-Control", "no-store")])

    def overview(self, request: Request) -> Response:
        running = {t["worker"]: t for t in self.dispatcher.store.tasks(status="active")}
        workers = [worker_cells(w, "nickname", [
            _task_link(running[w["id"]]["id"]) + " " + _text(running[w["id"]]["name"])
            if w["id"] in running else ""]) for w in self.roster.workers_view()]
        nicknames = {w["id"]: w["nickname"] or w["id"] for w in self.roster.store.workers()}
        tasks = [task_cells(t, nicknames) + [_text(f"{t['task_progress_percentage']}%"),
                                             self._image_cell(t["id"], 48)]
                 for t in self.dispatcher.store.tasks()]
        return overview_page("Flamenco development Manager",
                             f"<p>Manager {_text(self.dispatcher.store.manager_id)}</p>", [
            ("Workers", worker_headers("nickname", ["current task"]), workers),
            jobs_section(self.dispatcher),
            ("Tasks", TASK_HEADERS + ["progress", "newest image"], tasks)])

    def task_page(self, request: Request, task_id: str) -> Response:
        return task_page(self.dispatcher, task_id,
                         lambda: ["<h2>Newest image</h2>", self._image_cell(task_id, 240) or "<p>None.</p>"])
