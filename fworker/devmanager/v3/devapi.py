"""The developer's HTTP API of the Flamenco 3 development Manager, under
``/dev/`` like the 2.x one (no authentication, JSON in and out), plus what a
strict judge needs: the request log with validation results, 503 injection and
the preview images received.  See docs/DEVMANAGER.md.
"""
import typing

from .. import decoding
from ..devapi import answers_errors, optional_body
from ..web import Request, Response, empty_response, json_response, text_response
from .app import Faults
from .dispatch import Dispatcher
from .protocol import Previews
from .roster import Roster

_STATUS_REQUEST = {"status": decoding.string, "lazy": decoding.boolean}
_REASSIGN = {"worker": decoding.string}
_FAULT = {"count": decoding.integer_in(1, 1_000_000), "path": decoding.string,
          "retry_after": decoding.integer_in(0, 3600)}


class DevAPI:
    def __init__(self, roster: Roster, dispatcher: Dispatcher, previews: Previews,
                 requests_log: typing.Callable[[], list[dict]],
                 faults: typing.Callable[[], Faults]):
        self.roster = roster
        self.dispatcher = dispatcher
        self.previews = previews
        self.requests_log = requests_log
        self.faults = faults

    def routes(self) -> list[tuple[str, str, typing.Callable[..., Response]]]:
        routes = [
            ("POST", "/dev/jobs", self.submit_job),
            ("GET", "/dev/jobs", self.list_jobs),
            ("GET", "/dev/jobs/{job_id}", self.get_job),
            ("DELETE", "/dev/jobs/{job_id}", self.delete_job),
            ("POST", "/dev/jobs/{job_id}/cancel", self.cancel_job),
            ("GET", "/dev/jobs/{job_id}/last-rendered", self.last_rendered),
            ("GET", "/dev/tasks", self.list_tasks),
            ("GET", "/dev/tasks/{task_id}", self.get_task),
            ("DELETE", "/dev/tasks/{task_id}", self.forget_task),
            ("POST", "/dev/tasks/{task_id}/cancel", self.cancel_task),
            ("POST", "/dev/tasks/{task_id}/reassign", self.reassign_task),
            ("GET", "/dev/workers", self.list_workers),
            ("GET", "/dev/workers/{worker_id}", self.get_worker),
            ("POST", "/dev/workers/{worker_id}/status", self.request_status),
            ("DELETE", "/dev/workers/{worker_id}", self.forget_worker),
            ("GET", "/dev/requests", self.list_requests),
            ("POST", "/dev/faults", self.inject_fault),
            ("GET", "/dev/previews", self.list_previews),
        ]
        return [(method, path, answers_errors(handler)) for method, path, handler in routes]

    def submit_job(self, request: Request) -> Response:
        doc = decoding.parse_object(request.body())
        return json_response(self.dispatcher.submit_job(doc), 201)

    def list_jobs(self, request: Request) -> Response:
        return json_response(self.dispatcher.jobs_view())

    def get_job(self, request: Request, job_id: str) -> Response:
        return json_response(self.dispatcher.job_view(job_id))

    def delete_job(self, request: Request, job_id: str) -> Response:
        self.dispatcher.delete_job(job_id)
        return empty_response(204)

    def cancel_job(self, request: Request, job_id: str) -> Response:
        self.dispatcher.cancel_job(job_id)
        return json_response(self.dispatcher.job_view(job_id))

    def last_rendered(self, request: Request, job_id: str) -> Response:
        if job_id not in self.previews.last:
            return text_response(404, f"No image received for job {job_id}")
        mime, image = self.previews.last[job_id]
        return Response(200, image, [("Content-Type", mime)])

    def list_tasks(self, request: Request) -> Response:
        return json_response(self.dispatcher.tasks_view(request.query("job") or None))

    def get_task(self, request: Request, task_id: str) -> Response:
        view = self.dispatcher.task_view(task_id)
        view["updates"] = self.dispatcher.store.task_updates(task_id)
        return json_response(view)

    def forget_task(self, request: Request, task_id: str) -> Response:
        self.dispatcher.forget_task(task_id)
        return empty_response(204)

    def cancel_task(self, request: Request, task_id: str) -> Response:
        self.dispatcher.cancel_task(task_id)
        return json_response(self.dispatcher.task_view(task_id))

    def reassign_task(self, request: Request, task_id: str) -> Response:
        fields = decoding.decode(optional_body(request), _REASSIGN)
        self.dispatcher.reassign_task(task_id, fields.get("worker", ""))
        return json_response(self.dispatcher.task_view(task_id))

    def list_workers(self, request: Request) -> Response:
        return json_response(self.roster.workers_view())

    def get_worker(self, request: Request, worker_id: str) -> Response:
        return json_response(self.roster.worker_view(worker_id))

    def request_status(self, request: Request, worker_id: str) -> Response:
        fields = decoding.decode(request.body(), _STATUS_REQUEST, required=("status",))
        self.roster.request_status(worker_id, fields["status"], fields.get("lazy", False))
        return json_response(self.roster.worker_view(worker_id))

    def forget_worker(self, request: Request, worker_id: str) -> Response:
        self.roster.forget(worker_id)
        return empty_response(204)

    def list_requests(self, request: Request) -> Response:
        """Every API request (the last 10,000), ``?invalid=1`` only those that broke
        the document."""
        rows = self.requests_log()
        if request.query("invalid"):
            rows = [row for row in rows if not row["valid"]]
        return json_response(rows)

    def inject_fault(self, request: Request) -> Response:
        fields = decoding.decode(optional_body(request), _FAULT)
        self.faults().inject(**fields)
        return json_response(self.faults().armed, 201)

    def list_previews(self, request: Request) -> Response:
        job = request.query("job")
        return json_response(self.dispatcher.store.previews(**({"job": job} if job else {})))
