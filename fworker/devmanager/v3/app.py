"""The Flamenco 3 development Manager's WSGI application.

A request under ``/api/`` goes through what the real Manager's OpenAPI
middleware does, in its order: find the operation (``404``/``405``
``{message}``), check the security requirement (HTTP Basic; unknown or wrong
credentials ``403 {message}``), validate the body against the operation's schema
(``400 {message}`` naming the field), then an injected fault if one is armed
(``503`` with ``Retry-After``), then the handler.  Every API request is logged
with its validation result, for tests to assert that every request a worker
sent was valid.  Other paths go to the developer API and pages.
"""
import collections
import logging
import re
import typing

from .. import auth
from ..common import Row
from ..devapi import Route
from ..web import Environ, Handler, Request, Response, Router, StartResponse, json_response, text_response
from . import schema, validate
from .protocol import WorkerAPI, busy
from .roster import Roster

logger = logging.getLogger(__name__)


def _message(status: int, message: str) -> Response:
    return json_response({"message": message}, status)


class Fault(typing.TypedDict):
    count: int
    path: str
    retry_after: int


class Faults:
    """503 answers armed by tests: the next ``count`` API requests whose path
    starts with ``path`` get them."""

    def __init__(self) -> None:
        self.armed: list[Fault] = []

    def inject(self, count: int = 1, path: str = "/api/v3/worker/", retry_after: int = 1) -> None:
        self.armed.append({"count": count, "path": path, "retry_after": retry_after})

    def take(self, path: str) -> int | None:
        """Retry-After seconds if an armed fault matches path (and spend it)."""
        for fault in self.armed:
            if path.startswith(fault["path"]):
                fault["count"] -= 1
                if fault["count"] <= 0:
                    self.armed.remove(fault)
                return fault["retry_after"]
        return None


class App:
    def __init__(self, roster: Roster, worker_api: WorkerAPI, dev_routes: list[Route],
                 log_size: int = 10_000):
        self.roster = roster
        self.faults = Faults()
        handlers = worker_api.handlers()
        self.operations = [
            (name, op, re.compile(re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", op["path"])),
            handlers[name]) for name, op in schema.OPERATIONS.items()]
        self.router = Router()
        for method, pattern, handler in dev_routes:
            self.router.add(method, pattern, handler)
        self.requests_log: collections.deque[Row] = collections.deque(maxlen=log_size)
        self._seq = 0

    def __call__(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        request = Request(environ)
        record = {"method": request.method, "path": request.path}
        try:
            if request.path.startswith("/api/"):
                response = self._api(request, record)
            else:
                response = self.router.dispatch(request)
        except Exception:  # a bug in a handler: 500, as the Go Manager answers
            logger.exception("Error handling %s %s", request.method, request.path)
            response = text_response(500, "Internal Server Error")
        if "valid" in record:
            self._seq += 1
            self.requests_log.append(dict(record, seq=self._seq, status=response.status))
        headers = list(response.headers)
        if response.status != 204:
            headers.append(("Content-Length", str(len(response.body))))
        start_response(response.status_line, headers)
        return [response.body]

    def _find(self, request: Request) -> tuple[str, schema.Operation, dict[str, str], Handler] | int:
        """(name, operation, path parameters, handler), or 404/405."""
        allowed = False
        for name, op, regex, handler in self.operations:
            match = regex.fullmatch(request.path)
            if match:
                if op["method"] == request.method:
                    return name, op, match.groupdict(), handler
                allowed = True
        return 405 if allowed else 404

    def _api(self, request: Request, record: Row) -> Response:
        found = self._find(request)
        if isinstance(found, int):
            record.update(operation=None, valid=False, error="no such operation in the document")
            return _message(found, "Not Found" if found == 404 else "Method Not Allowed")
        name, op, params, handler = found
        record.update(operation=name, valid=True, error=None, worker=None)
        worker = None
        if op["auth"]:
            authorization = request.header("Authorization")
            if auth.parse_basic(authorization) is None:
                record.update(valid=False, error="Authorization: HTTP Basic credentials required")
                return _message(403, "security requirements failed: no auth header found")
            worker = self.roster.authenticate(authorization)
            if worker is None:
                return _message(403, "security requirements failed: no such worker known")
            record["worker"] = worker["id"]
            self.roster.seen(worker, request.remote_addr)
        try:
            body = validate.check_body(op, request.environ.get("CONTENT_TYPE", ""),
                                       request.body())
        except validate.Invalid as ex:
            record.update(valid=False, error=str(ex))
            return _message(400, f"request body has an error: {ex}")
        retry_after = self.faults.take(request.path)
        if retry_after is not None:
            return busy(retry_after)
        return handler(request, worker, body, **params)
