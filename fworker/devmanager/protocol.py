"""The worker API of docs/PROTOCOL.md §3, over the Roster and Dispatcher.

Each handler turns HTTP into calls on the rules and the outcome back into
the Manager's exact answers (status codes, bodies, headers).
"""
import functools
import logging
import typing

from . import decoding, dispatch
from .common import Row, is_object_id
from .decoding import DecodeError
from .dispatch import Dispatcher
from .roster import Roster
from .web import Request, Response, empty_response, json_response, text_response

logger = logging.getLogger(__name__)

_REGISTRATION = {"secret": decoding.non_empty_string, "platform": decoding.string,
                 "supported_task_types": decoding.string_list,
                 "supported_job_types": decoding.string_list, "nickname": decoding.string}
_SIGN_ON = {"supported_task_types": decoding.string_list, "nickname": decoding.string}
_TASK_UPDATE = {
    "task_status": decoding.one_of("active", "completed", "failed", "canceled"),
    "activity": decoding.string,
    "task_progress_percentage": decoding.integer_in(0, 100),
    "current_command_idx": decoding.integer_in(0, decoding.INT64_MAX),
    "command_progress_percentage": decoding.integer_in(0, 100),
    "log": decoding.string,
    "metrics": decoding.metrics,
}
_OUTPUT = {"paths": decoding.string_list}


def unauthorized() -> Response:
    response = text_response(401, "401 Unauthorized")
    response.headers.append(("WWW-Authenticate", 'Basic realm="Flamenco Manager"'))
    return response


def undecodable(error: DecodeError) -> Response:
    return text_response(400, f"Unable to decode JSON: {error}")


def invalid_task_id(task_id: str) -> Response:
    return text_response(404, f"Invalid ObjectID used for task-id: {task_id}")


class WorkerAPI:
    """Handlers for the endpoints a worker calls."""

    def __init__(self, roster: Roster, dispatcher: Dispatcher):
        self.roster = roster
        self.dispatcher = dispatcher

    def routes(self) -> list[tuple[str, str, typing.Callable[..., Response]]]:
        return [
            ("POST", "/register-worker", self.register_worker),
            ("POST", "/sign-on", self._authenticated(self.sign_on)),
            ("POST", "/sign-off", self._authenticated(self.sign_off)),
            ("POST", "/task", self._authenticated(self.ask_for_task)),
            ("POST", "/tasks/{task_id}/update", self._authenticated(self.update_task)),
            ("POST", "/tasks/{task_id}/return", self._authenticated(self.return_task)),
            ("GET", "/may-i-run/{task_id}", self._authenticated(self.may_i_run)),
            ("GET", "/status-change", self._authenticated(self.status_change)),
            ("POST", "/ack-status-change/{status}", self._authenticated(self.ack_status_change)),
            ("POST", "/output-produced", self._authenticated(self.output_produced)),
        ]

    def _authenticated(self, handler: typing.Callable[..., Response]) -> typing.Callable[..., Response]:
        """Basic auth first (401 on any failure); then the handler gets the worker."""
        @functools.wraps(handler)
        def wrapper(request: Request, **params: str) -> Response:
            worker = self.roster.authenticate(request.header("Authorization"))
            if worker is None:
                return unauthorized()
            worker = self.roster.seen(worker, request.user_agent, request.remote_addr)
            return handler(request, worker, **params)
        return wrapper

    def register_worker(self, request: Request) -> Response:
        refusal = self.roster.check_registration(request.header("Authorization"))
        if refusal is not None:
            return text_response(403, refusal)
        try:
            fields = decoding.decode(request.body(), _REGISTRATION, required=("secret",))
        except DecodeError as ex:
            return undecodable(ex)
        worker = self.roster.register(fields, request.user_agent, request.remote_addr)
        return json_response(self.roster.registration_doc(worker))

    def sign_on(self, request: Request, worker: Row) -> Response:
        try:
            fields = decoding.decode(request.body(), _SIGN_ON)
        except DecodeError as ex:
            return undecodable(ex)
        self.roster.sign_on(worker, fields)
        return empty_response(204)

    def sign_off(self, request: Request, worker: Row) -> Response:
        self.roster.sign_off(worker)
        return empty_response(204)

    def ask_for_task(self, request: Request, worker: Row) -> Response:
        if worker["status_requested"]:
            return json_response({"status_requested": worker["status_requested"]}, 423)
        if not worker["supported_task_types"]:
            return text_response(406, "You do not support any task types.")
        self.roster.asking_for_work(worker)
        task = self.dispatcher.assign(worker)
        if task is None:
            return empty_response(204)
        return json_response(self.dispatcher.task_json(task, worker))

    def update_task(self, request: Request, worker: Row, task_id: str) -> Response:
        if not is_object_id(task_id):
            return invalid_task_id(task_id)
        try:
            body = decoding.parse_object(request.body())
            fields = decoding.check_fields(body, _TASK_UPDATE)
        except DecodeError as ex:
            return undecodable(ex)
        outcome = self.dispatcher.apply_update(worker, task_id.lower(), body, fields)
        if outcome == dispatch.UNKNOWN_TASK:
            return text_response(404, f"Task {task_id} is unknown.")
        if outcome == dispatch.OTHER_WORKERS:
            return text_response(409, f"Task {task_id} is assigned to another worker.")
        return empty_response(204)

    def return_task(self, request: Request, worker: Row, task_id: str) -> Response:
        if not is_object_id(task_id):
            return invalid_task_id(task_id)
        if not self.dispatcher.give_back(worker, task_id.lower()):
            return empty_response(404)
        return empty_response(204)

    def may_i_run(self, request: Request, worker: Row, task_id: str) -> Response:
        if not is_object_id(task_id):
            return invalid_task_id(task_id)
        return json_response(self.dispatcher.may_keep_running(worker, task_id.lower()))

    def status_change(self, request: Request, worker: Row) -> Response:
        if not worker["status_requested"]:
            return empty_response(204)
        return json_response({"status_requested": worker["status_requested"]})

    def ack_status_change(self, request: Request, worker: Row, status: str) -> Response:
        self.roster.acknowledge(worker, status)
        return empty_response(204)

    def output_produced(self, request: Request, worker: Row) -> Response:
        try:
            fields = decoding.decode(request.body(), _OUTPUT)
        except DecodeError as ex:
            return undecodable(ex)
        if not fields.get("paths"):
            return text_response(422, "No paths given.")
        self.roster.record_output(worker, fields["paths"])
        return empty_response(204)
