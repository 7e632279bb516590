"""A fault-injecting Manager: an HTTP proxy in front of a Manager that misbehaves on command.

Tests put it between the worker and the development Manager and tell it what to do to the
next matching requests (``inject``), or take it off the network for a while (``down``/``up``,
``outage``).  The kinds of fault (``KINDS``):

- ``refuse``: the listener is closed, connections are refused (``down``/``up``/``outage``);
- ``reset``: the connection is closed before anything is forwarded;
- ``html500``: ``500`` with an HTML page, as a broken reverse proxy answers; not forwarded;
- ``garbage``: ``200`` with bytes that are not JSON, labelled JSON; not forwarded;
- ``empty``: ``200`` with an empty body; not forwarded;
- ``wrongshape``: ``200`` with JSON of the wrong shape (a list); not forwarded;
- ``slow``: forwarded (the Manager applies it), answered only after ``delay`` seconds,
  longer than the worker waits: the worker never sees the answer and sends it again;
- ``drop``: forwarded, then the connection is closed without an answer;
- ``trickle``: forwarded, then answered ``200`` a byte at a time, four bytes a second,
  for longer than any request's deadline (a Manager behind a choking link);
- ``huge``: ``200`` announcing a 50 MB body (sent lazily, in chunks, for as long as the
  client reads); not forwarded.

Only ``slow``, ``drop`` and ``trickle`` lose a response to a request the Manager applied, so only after
them may the Manager see a request again (``Exchange.response_lost``).  So does any
answer the client gave up waiting for, whatever the reason: the proxy looks whether the
client closed its connection before the answer went out, and, with ``client_timeout``
given, counts an answer later than half of it as lost too (the request may have waited
in the socket before the proxy read it).  Every request is
recorded as an ``Exchange`` in ``exchanges``, every fault applied is counted in ``injected``,
and tests can ``mark`` moments (a worker killed and restarted) on the same monotonic clock.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import logging
import re
import select
import socket
import time
import typing

import gevent
import gevent.pool
import requests
from gevent import pywsgi

log = logging.getLogger(__name__)

KINDS = ("refuse", "reset", "html500", "garbage", "empty", "wrongshape", "slow", "drop", "trickle", "huge")
HUGE = 50 * 1000 * 1000
TRICKLE_BYTES, TRICKLE_PERIOD = 120, 0.25
_NOT_FORWARDED = {
    "html500": (500, "text/html", (b"<html><head><title>500 Internal Server Error</title></head>"
                                   b"<body><h1>Internal Server Error</h1><hr>nginx</body></html>\n")),
    "garbage": (200, "application/json", b"\x00\xff{not json at all\x9c\n"),
    "empty": (200, "application/json", b""),
    "wrongshape": (200, "application/json", b'["not", "the", "expected", "shape"]\n'),
}
_FORWARDED_HEADERS = (("Content-Type", "CONTENT_TYPE"), ("Authorization", "HTTP_AUTHORIZATION"),
                      ("User-Agent", "HTTP_USER_AGENT"))
_ANSWER_HEADERS = ("content-type", "www-authenticate", "location")


@dataclasses.dataclass
class Exchange:
    """One request through the proxy, as it happened."""

    index: int
    started: float  # time.monotonic()
    method: str
    path: str
    body: typing.Any  # the request's JSON, decoded; None when there is none
    fault: str | None = None
    manager_status: int | None = None  # the Manager's answer; None: not forwarded
    client_status: int | None = None  # what the client was answered; None: no answer
    response_lost: bool = False  # the Manager applied it and the client never saw the answer
    forwarded_at: float | None = None  # when the proxy sent it on to the Manager
    answered_at: float | None = None  # when the Manager's answer came back


@dataclasses.dataclass
class _Rule:
    method: str | None
    path: re.Pattern
    times: int  # requests it still applies to; -1: forever
    kind: str = ""
    delay: float = 0.0
    status: int = 0
    body: bytes = b""
    content_type: str = ""


class _Drop(Exception):
    """Raised by the app: close the connection without answering."""


class _Handler(pywsgi.WSGIHandler):
    def get_environ(self) -> dict:
        environ = super().get_environ()
        environ["faults.socket"] = self.socket  # to see whether the client is still there
        return environ

    def run_application(self) -> None:
        try:
            super().run_application()
        except _Drop:
            self.close_connection = True
            try:
                self.socket.shutdown(socket.SHUT_RDWR)
            except OSError as ex:  # the client went first: the same result
                log.debug("shutdown of a dropped connection: %s", ex)


class FaultProxy:
    """The proxy.  ``FaultProxy(target_url).up()``; ``url`` is where workers go."""

    def __init__(self, target_url: str, port: int = 0, host: str = "127.0.0.1", slow_delay: float = 2.0,
                 client_timeout: float | None = None):
        self.target_url = target_url.rstrip("/")
        self.host, self.port, self.slow_delay = host, port, slow_delay
        self.client_timeout = client_timeout
        self.rules: list[_Rule] = []
        self.rewrites: list[list] = []
        self.exchanges: list[Exchange] = []
        self.injected: collections.Counter[str] = collections.Counter()
        self.outages: list[tuple[float, float]] = []  # (start, end) of each refuse period
        self.marks: list[tuple[float, str]] = []
        self.session = requests.Session()
        self.server: pywsgi.WSGIServer | None = None
        self._busy: set[gevent.Greenlet] = set()
        self._down_since: float | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def log(self) -> list[tuple[str, str, int]]:
        """(method, path, status answered; 0: none) of every request, in order."""
        return [(x.method, x.path, x.client_status or 0) for x in self.exchanges]

    # Taking it off the network and back.

    def up(self) -> FaultProxy:
        if self.server is None:
            self.server = pywsgi.WSGIServer((self.host, self.port), self._app, handler_class=_Handler,
                                            spawn=gevent.pool.Pool(), log=None, error_log=None)
            self.server.start()
            self.port = self.server.server_port
        if self._down_since is not None:
            self.outages.append((self._down_since, time.monotonic()))
            self._down_since = None
        return self

    def down(self) -> None:
        """Refuse new connections and close idle ones; a request being handled still
        gets its answer (on a closing connection), so the record of what the Manager
        applied stays exact."""
        if self.server is None:
            return
        server, self.server = self.server, None
        server.close()
        for greenlet in list(server.pool):
            if greenlet not in self._busy:
                greenlet.kill(block=False)
        self._down_since = time.monotonic()
        self.injected["refuse"] += 1

    def outage(self, seconds: float) -> gevent.Greenlet:
        """Down now, up again after ``seconds``, in the background."""
        self.down()
        return gevent.spawn_later(seconds, self.up)

    # Faults on command.

    def inject(self, kind: str, path: str = "", method: str | None = None, times: int = 1,
               delay: float | None = None) -> None:
        """Apply ``kind`` to the next ``times`` requests matching ``method`` and the
        ``path`` regular expression (-1: all of them, until ``clear``)."""
        if kind not in KINDS or kind == "refuse":
            raise ValueError(f"unknown fault {kind!r}; refuse is down()/outage()")
        self.rules.append(_Rule(method, re.compile(path), times, kind=kind,
                                delay=self.slow_delay if delay is None else delay))

    def answer(self, method: str, path_regex: str, status: int, body: typing.Any = b"",
               content_type: str = "text/plain", times: int = -1) -> None:
        """Answer matching requests with this, without forwarding them."""
        if not isinstance(body, bytes):
            body, content_type = (json.dumps(body) + "\n").encode(), "application/json"
        self.rules.append(_Rule(method, re.compile(path_regex), times, status=status, body=body,
                                content_type=content_type))

    def rewrite(self, method: str, path_regex: str, fn: typing.Callable[[typing.Any], typing.Any],
                times: int = 1) -> None:
        """Forward matching requests, then answer with ``fn(decoded JSON answer)``."""
        self.rewrites.append([method, re.compile(path_regex), fn, times])

    def clear(self) -> None:
        self.rules.clear()
        self.rewrites.clear()

    def mark(self, label: str, *, fault: bool = False) -> None:
        """Note a moment (e.g. ``kill``, ``restart``) on the exchanges' clock;
        ``fault``: count it in ``injected`` too (a fault done by the test itself)."""
        self.marks.append((time.monotonic(), label))
        if fault:
            self.injected[label] += 1

    def updates(self) -> list[Exchange]:
        """Every task update request, in the order the proxy received them."""
        return [x for x in self.exchanges if x.method == "POST" and x.path.endswith("/update")]

    # Serving.

    def _app(self, environ: dict, start_response: typing.Callable) -> list[bytes]:
        me = gevent.getcurrent()
        self._busy.add(me)
        try:
            return self._serve(environ, start_response)
        finally:
            self._busy.discard(me)

    def _serve(self, environ: dict, start_response: typing.Callable) -> list[bytes]:
        method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        x = Exchange(len(self.exchanges), time.monotonic(), method, path, _decode(raw))
        self.exchanges.append(x)
        rule = self._rule_for(method, path)
        if rule is not None and not rule.kind:
            return self._reply(x, start_response, rule.status, rule.content_type, rule.body)
        if rule is not None:
            x.fault = rule.kind
            self.injected[rule.kind] += 1
            if rule.kind == "reset":
                raise _Drop()
            if rule.kind in _NOT_FORWARDED:
                return self._reply(x, start_response, *_NOT_FORWARDED[rule.kind])
            if rule.kind == "huge":
                x.client_status = 200
                start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(HUGE))])
                return _chunks(HUGE)
        status, headers, content = self._forward(x, environ, raw)
        if rule is not None:  # slow, drop or trickle: the Manager applied it, the client will not know
            x.response_lost = True
            if rule.kind == "drop":
                raise _Drop()
            if rule.kind == "trickle":
                x.client_status = 200
                start_response("200 OK", [("Content-Type", "application/json")])
                return _trickle()
            gevent.sleep(rule.delay)
        content = self._rewritten(method, path, content)
        if _client_gone(environ.get("faults.socket")):
            x.response_lost = True
        return self._reply(x, start_response, status, headers, content)

    def _forward(self, x: Exchange, environ: dict, raw: bytes) -> tuple[int, list, bytes]:
        headers = {name: environ[key] for name, key in _FORWARDED_HEADERS if environ.get(key)}
        query = environ.get("QUERY_STRING")
        url = self.target_url + x.path + (f"?{query}" if query else "")
        x.forwarded_at = time.monotonic()
        resp = self.session.request(x.method, url, data=raw or None, headers=headers, allow_redirects=False,
                                    timeout=30)
        x.answered_at = time.monotonic()
        x.manager_status = resp.status_code
        kept = [(k, v) for k, v in resp.headers.items() if k.lower() in _ANSWER_HEADERS]
        return resp.status_code, kept, resp.content

    def _rewritten(self, method: str, path: str, content: bytes) -> bytes:
        for rewrite in self.rewrites:
            if rewrite[3] != 0 and rewrite[0] == method and rewrite[1].search(path) and content:
                rewrite[3] -= 1
                return (json.dumps(rewrite[2](json.loads(content))) + "\n").encode()
        return content

    def _reply(self, x: Exchange, start_response: typing.Callable, status: int,
               headers: list | str, body: bytes) -> list[bytes]:
        if isinstance(headers, str):
            headers = [("Content-Type", headers)]
        if self.server is None:  # went down meanwhile: this answer is the connection's last
            headers = [*headers, ("Connection", "close")]
        x.client_status = status
        # Timed from reading the request, the client waited longer still: keep a margin.
        late = self.client_timeout is not None and time.monotonic() - x.started > 0.5 * self.client_timeout
        if late and x.manager_status is not None:
            x.response_lost = True
        start_response(f"{status} {_REASONS.get(status, 'Whatever')}", headers)
        return [body]

    def _rule_for(self, method: str, path: str) -> _Rule | None:
        for rule in self.rules:
            if rule.times != 0 and rule.method in (None, method) and rule.path.search(path):
                if rule.times > 0:
                    rule.times -= 1
                return rule
        return None


_REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            409: "Conflict", 423: "Locked", 500: "Internal Server Error", 502: "Bad Gateway"}


def _client_gone(sock: socket.socket | None) -> bool:
    """The client closed the connection (it gave up waiting): readable, at EOF."""
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:  # reset by the client: gone as well
        return True


def _chunks(size: int, chunk: int = 1 << 20) -> typing.Iterator[bytes]:
    block = b" " * chunk
    for start in range(0, size, chunk):
        yield block[:min(chunk, size - start)]


def _trickle() -> typing.Iterator[bytes]:
    for _ in range(TRICKLE_BYTES):
        yield b" "
        gevent.sleep(TRICKLE_PERIOD)  # the pace is the fault


def _decode(raw: bytes) -> typing.Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", errors="replace")
