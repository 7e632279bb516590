"""Just enough HTTP for the development Manager: requests, responses, routing.

The routing rules copy the Go Manager's router: an unknown path is
``404 page not found``, a known path with the wrong method is ``405`` with an
empty body, and a known path with a trailing slash is redirected (``301``)
to the canonical path.
"""
import dataclasses
import http
import json
import re
import typing
import urllib.parse

TEXT = "text/plain; charset=utf-8"

# What a WSGI server hands an application (PEP 3333), as far as ours use it.
Environ = dict[str, typing.Any]
StartResponse = typing.Callable[[str, list[tuple[str, str]]], object]
WSGIApp = typing.Callable[[Environ, StartResponse], typing.Iterable[bytes]]


class Request:
    """The parts of a WSGI environ that handlers use."""

    def __init__(self, environ: Environ):
        self.environ = environ
        self.method: str = environ["REQUEST_METHOD"]
        self.path: str = environ.get("PATH_INFO") or "/"
        self.query_string: str = environ.get("QUERY_STRING", "")
        self._body: bytes | None = None

    def header(self, name: str) -> str:
        key = "HTTP_" + name.upper().replace("-", "_")
        value: str = self.environ.get(key, "")
        return value

    @property
    def user_agent(self) -> str:
        return self.header("User-Agent")

    @property
    def remote_addr(self) -> str:
        address: str = self.environ.get("REMOTE_ADDR", "")
        return address

    def query(self, name: str, default: str = "") -> str:
        values = urllib.parse.parse_qs(self.query_string).get(name)
        return values[-1] if values else default

    def body(self) -> bytes:
        if self._body is None:
            stream = self.environ.get("wsgi.input")
            self._body = stream.read() if stream is not None else b""
        return self._body


@dataclasses.dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    @property
    def status_line(self) -> str:
        try:
            phrase = http.HTTPStatus(self.status).phrase
        except ValueError:
            phrase = "Unknown"
        return f"{self.status} {phrase}"


def json_response(value: typing.Any, status: int = 200) -> Response:
    """JSON ending in a newline, like Go's json.Encoder."""
    body = (json.dumps(value) + "\n").encode("utf-8")
    return Response(status, body, [("Content-Type", "application/json")])


def text_response(status: int, message: str) -> Response:
    """A short plain-text answer, newline-terminated like Go's http.Error."""
    if not message.endswith("\n"):
        message += "\n"
    return Response(status, message.encode("utf-8"), [("Content-Type", TEXT)])


def html_response(html: str, status: int = 200) -> Response:
    return Response(status, html.encode("utf-8"), [("Content-Type", "text/html; charset=utf-8")])


def empty_response(status: int) -> Response:
    return Response(status)


Handler = typing.Callable[..., Response]


class Router:
    """Routes ``(method, pattern)`` to handlers; ``{name}`` in a pattern
    matches one path segment and is passed to the handler as a keyword."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
        self._routes.append((method, re.compile(regex), handler))

    def _methods(self, path: str) -> list[str]:
        return [method for method, regex, _ in self._routes if regex.fullmatch(path)]

    def dispatch(self, request: Request) -> Response:
        for method, regex, handler in self._routes:
            match = regex.fullmatch(request.path)
            if match and method == request.method:
                return handler(request, **match.groupdict())
        methods = self._methods(request.path)
        if methods:
            return Response(405, headers=[("Allow", ", ".join(sorted(set(methods))))])
        canonical = request.path.rstrip("/")
        if request.path != "/" and canonical != request.path and self._methods(canonical):
            location = canonical + ("?" + request.query_string if request.query_string else "")
            return Response(301, headers=[("Location", location)])
        return text_response(404, "404 page not found")
