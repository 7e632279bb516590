"""The developer's HTTP API under ``/dev/``: no authentication, JSON in and
out, the same operations as the DevManager Python API.  See DEVMANAGER.md.
"""
import functools
import typing

from . import common, decoding, jobs
from .decoding import DecodeError
from .dispatch import DispatcherBase
from .roster import RosterBase
from .web import Request, Response, empty_response, json_response, text_response

_STATUS_REQUEST = {"status": decoding.string, "lazy": decoding.boolean}
_REASSIGN = {"worker": decoding.string}


def answers_errors(handler: typing.Callable[..., Response]) -> typing.Callable[..., Response]:
    """Unknown ids become 404 and bad bodies 400, with the reason as text."""
    @functools.wraps(handler)
    def wrapper(*args: typing.Any, **kwargs: typing.Any) -> Response:
        try:
            return handler(*args, **kwargs)
        except common.NotFound as ex:
            return text_response(404, str(ex))
        except DecodeError as ex:
            return text_response(400, f"Unable to decode JSON: {ex}")
        except jobs.InvalidJob as ex:
            return text_response(400, f"Invalid job: {ex}")
    return wrapper


def optional_body(request: Request) -> bytes:
    """Bodies whose fields are all optional may be left out entirely."""
    return request.body() if request.body().strip() else b"{}"


Route = tuple[str, str, typing.Callable[..., Response]]


class DevAPI:
    """The operations both generations offer; the Flamenco 3 one (v3/devapi.py) adds
    its own to these."""

    def __init__(self, roster: RosterBase, dispatcher: DispatcherBase):
        self.roster = roster
        self.dispatcher = dispatcher

    def routes(self) -> list[Route]:
        return [(method, path, answers_errors(handler)) for method, path, handler in self._routes()]

    def _routes(self) -> list[Route]:
        return [
            ("POST", "/dev/jobs", self.submit_job),
            ("GET", "/dev/jobs", self.list_jobs),
            ("GET", "/dev/jobs/{job_id}", self.get_job),
            ("POST", "/dev/jobs/{job_id}/cancel", self.cancel_job),
            ("GET", "/dev/tasks", self.list_tasks),
            ("GET", "/dev/tasks/{task_id}", self.get_task),
            ("POST", "/dev/tasks/{task_id}/cancel", self.cancel_task),
            ("POST", "/dev/tasks/{task_id}/reassign", self.reassign_task),
            ("GET", "/dev/workers", self.list_workers),
            ("GET", "/dev/workers/{worker_id}", self.get_worker),
            ("POST", "/dev/workers/{worker_id}/status", self.request_status),
            ("DELETE", "/dev/workers/{worker_id}", self.forget_worker),
        ]

    def submit_job(self, request: Request) -> Response:
        doc = decoding.parse_object(request.body())
        return json_response(self.dispatcher.submit_job(doc), 201)

    def list_jobs(self, request: Request) -> Response:
        return json_response(self.dispatcher.jobs_view())

    def get_job(self, request: Request, job_id: str) -> Response:
        return json_response(self.dispatcher.job_view(job_id))

    def cancel_job(self, request: Request, job_id: str) -> Response:
        self.dispatcher.cancel_job(job_id)
        return json_response(self.dispatcher.job_view(job_id))

    def list_tasks(self, request: Request) -> Response:
        return json_response(self.dispatcher.tasks_view(request.query("job") or None))

    def get_task(self, request: Request, task_id: str) -> Response:
        view = self.dispatcher.task_view(task_id)
        view["updates"] = self.dispatcher.store.task_updates(task_id)
        return json_response(view)

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
