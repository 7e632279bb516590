"""The developer's HTTP API of the Flamenco 3 development Manager, under
``/dev/`` like the 2.x one (no authentication, JSON in and out), plus what a
strict judge needs: the request log with validation results, 503 injection and
the preview images received.  See docs/DEVMANAGER.md.
"""
import typing

from .. import decoding, devapi
from ..common import Row
from ..devapi import optional_body
from ..web import Request, Response, empty_response, json_response, text_response
from .app import Faults
from .dispatch import Dispatcher
from .protocol import Previews
from .roster import Roster

_FAULT = {"count": decoding.integer_in(1, 1_000_000), "path": decoding.string,
          "retry_after": decoding.integer_in(0, 3600)}


class DevAPI(devapi.DevAPI):
    roster: Roster
    dispatcher: Dispatcher

    def __init__(self, roster: Roster, dispatcher: Dispatcher, previews: Previews,
                 requests_log: typing.Callable[[], list[Row]],
                 faults: typing.Callable[[], Faults]):
        super().__init__(roster, dispatcher)
        self.previews = previews
        self.requests_log = requests_log
        self.faults = faults

    def _routes(self) -> list[devapi.Route]:
        return super()._routes() + [
            ("DELETE", "/dev/jobs/{job_id}", self.delete_job),
            ("GET", "/dev/jobs/{job_id}/last-rendered", self.last_rendered),
            ("DELETE", "/dev/tasks/{task_id}", self.forget_task),
            ("GET", "/dev/requests", self.list_requests),
            ("POST", "/dev/faults", self.inject_fault),
            ("GET", "/dev/previews", self.list_previews),
        ]

    def delete_job(self, request: Request, job_id: str) -> Response:
        self.dispatcher.delete_job(job_id)
        return empty_response(204)

    def last_rendered(self, request: Request, job_id: str) -> Response:
        if job_id not in self.previews.last:
            return text_response(404, f"No image received for job {job_id}")
        mime, image = self.previews.last[job_id]
        return Response(200, image, [("Content-Type", mime)])

    def forget_task(self, request: Request, task_id: str) -> Response:
        self.dispatcher.forget_task(task_id)
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
