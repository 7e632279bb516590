"""The Flamenco 3 worker API handlers, called by app.py once a request has
passed authentication and validation against schema.OPERATIONS.

Each handler gets the request, the authenticated worker (None for operations
without auth), the validated body and the path parameters, and answers with the
real Manager's codes and bodies: ``{code, message}`` errors from the handlers,
``Retry-After`` on 503.
"""
import logging
import typing

import gevent

from ..common import Row
from ..web import Request, Response, empty_response, json_response
from . import dispatch, schema
from .dispatch import Dispatcher
from .roster import Roster, is_uuid

logger = logging.getLogger(__name__)

# Images the real Manager holds for processing before it answers 429.
PREVIEW_QUEUE_SIZE = 3


def error(code: int, message: str) -> Response:
    return json_response({"code": code, "message": message}, code)


def busy(retry_after: int, message: str = "too busy, try again later") -> Response:
    response = error(503, message)
    response.headers.append(("Retry-After", str(retry_after)))
    return response


class Previews:
    """The Manager's small queue of images being turned into thumbnails: each
    accepted image occupies a place for ``delay`` seconds."""

    def __init__(self, delay: float, size: int = PREVIEW_QUEUE_SIZE):
        self.delay = delay
        self.size = size
        self.waiting = 0
        self.last: dict[str, tuple[str, bytes]] = {}  # job id -> (type, image)
        self._timers: set[gevent.Greenlet[[], None]] = set()

    def offer(self, job_id: str, mime: str, image: bytes) -> bool:
        if self.waiting >= self.size:
            return False
        self.waiting += 1
        self.last[job_id] = (mime, image)
        timer = gevent.spawn_later(self.delay, self._done)
        self._timers.add(timer)
        timer.link(self._timers.discard)
        return True

    def _done(self) -> None:
        self.waiting -= 1

    def stop(self) -> None:
        """Forget the images being processed (a stopped Manager holds no timers)."""
        for timer in list(self._timers):
            timer.kill(block=False)
        self.waiting = 0


class WorkerAPI:
    def __init__(self, roster: Roster, dispatcher: Dispatcher, previews: Previews,
                 version: Row):
        self.roster = roster
        self.dispatcher = dispatcher
        self.previews = previews
        self.version = version

    def handlers(self) -> dict[str, typing.Callable[..., Response]]:
        """operationId -> handler(request, worker, body, **path parameters)."""
        return {
            "getVersion": self.get_version, "registerWorker": self.register_worker,
            "signOn": self.sign_on, "signOff": self.sign_off, "workerState": self.worker_state,
            "workerStateChanged": self.state_changed, "scheduleTask": self.schedule_task,
            "taskUpdate": self.task_update, "mayWorkerRun": self.may_worker_run,
            "taskOutputProduced": self.output_produced,
        }

    def get_version(self, request: Request, worker: None, body: None) -> Response:
        return json_response(self.version)

    def register_worker(self, request: Request, worker: None, body: Row) -> Response:
        registered = self.roster.register(body, request.remote_addr)
        return json_response(self.roster.registered_worker(registered))

    def sign_on(self, request: Request, worker: Row, body: Row) -> Response:
        return json_response({"status_requested": self.roster.sign_on(worker, body)})

    def sign_off(self, request: Request, worker: Row, body: None) -> Response:
        self.roster.sign_off(worker)
        return empty_response(204)

    def worker_state(self, request: Request, worker: Row, body: None) -> Response:
        if not worker["status_requested"]:
            return empty_response(204)
        return json_response({"status_requested": worker["status_requested"]})

    def state_changed(self, request: Request, worker: Row, body: Row) -> Response:
        self.roster.state_changed(worker, body["status"])
        return empty_response(204)

    def schedule_task(self, request: Request, worker: Row, body: None) -> Response:
        if worker["status_requested"]:
            return json_response({"status_requested": worker["status_requested"]}, 423)
        if worker["status"] != "awake":
            return error(409, f'worker is in state "{worker["status"]}", requires state '
                              f'"awake" to execute tasks')
        task = self.dispatcher.assign(worker)
        if task is None:
            return empty_response(204)
        return json_response(self.dispatcher.assigned_task(task, worker))

    def task_update(self, request: Request, worker: Row, body: Row, task_id: str) -> Response:
        if not is_uuid(task_id):
            return error(400, "task ID not valid")
        outcome, message = self.dispatcher.apply_update(worker, task_id.lower(), body)
        codes = {dispatch.UNKNOWN_TASK: 404, dispatch.NOT_YOURS: 409, dispatch.REFUSED: 400}
        if outcome in codes:
            return error(codes[outcome], message)
        return empty_response(204)

    def may_worker_run(self, request: Request, worker: Row, body: None,
                       task_id: str) -> Response:
        if not is_uuid(task_id):
            return error(400, "task ID not valid")
        return json_response(self.dispatcher.may_keep_running(worker, task_id.lower()))

    def output_produced(self, request: Request, worker: Row, body: bytes,
                        task_id: str) -> Response:
        length = request.environ.get("CONTENT_LENGTH") or ""
        if not length.isdigit() or int(length) <= 0:
            return error(411, "Content-Length header required")
        if int(length) > schema.MAX_IMAGE_BYTES:
            return error(413, f"image too large; should be max {schema.MAX_IMAGE_BYTES} bytes")
        task = self.dispatcher.store.task(task_id.lower()) if is_uuid(task_id) else None
        if task is None:
            return json_response("Task does not exist", 404)
        mime = request.environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        if not self.previews.offer(task["job"], mime, body):
            return error(429, "image processing queue is full")
        row = self.dispatcher.store.add_preview(worker["id"], task, mime, body)
        if not row["image_ok"]:
            logger.warning("Preview from worker %s is not a %s image", worker["id"], mime)
        return empty_response(202)
