"""The development Manager's WSGI application: routing, the request log and
the last line of defence against handler bugs (a logged 500)."""
import collections
import logging

from .devapi import DevAPI
from .dispatch import Dispatcher
from .protocol import WorkerAPI
from .roster import Roster
from .views import Views
from .web import Environ, Request, Router, StartResponse, text_response

logger = logging.getLogger(__name__)


class App:
    """A WSGI callable serving the worker API, the dev API and the HTML pages."""

    def __init__(self, roster: Roster, dispatcher: Dispatcher, log_size: int = 10_000):
        self.router = Router()
        for api in (WorkerAPI(roster, dispatcher), DevAPI(roster, dispatcher),
                    Views(roster, dispatcher)):
            for method, pattern, handler in api.routes():
                self.router.add(method, pattern, handler)
        # (method, path, status) of the latest requests, for tests to assert on.
        self.requests_log: collections.deque[tuple[str, str, int]] = \
            collections.deque(maxlen=log_size)

    def __call__(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        request = Request(environ)
        try:
            response = self.router.dispatch(request)
        except Exception:  # a bug in a handler: answer 500 as the Go Manager would
            logger.exception("Error handling %s %s", request.method, request.path)
            response = text_response(500, "Internal Server Error")
        self.requests_log.append((request.method, request.path, response.status))
        logger.debug("%s %s -> %d", request.method, request.path, response.status)
        headers = list(response.headers)
        if response.status != 204:  # a 204 carries no body, hence no length either
            headers.append(("Content-Length", str(len(response.body))))
        start_response(response.status_line, headers)
        return [response.body]
