"""A small HTTP proxy in front of the development Manager that can misbehave
on command: answer with an error, replace a body, or refuse connections."""
from __future__ import annotations

import dataclasses
import json
import re
import typing

import gevent.pywsgi
import requests


@dataclasses.dataclass
class Rule:
    method: str
    path: re.Pattern
    status: int
    body: bytes
    content_type: str
    times: int  # how many requests it still applies to; -1: forever


class FaultProxy:
    def __init__(self, target_url: str, port: int = 0):
        self.target_url = target_url.rstrip("/")
        self.port = port
        self.rules: list[Rule] = []
        self.rewrites: list[list] = []
        self.log: list[tuple[str, str, int]] = []
        self.session = requests.Session()
        self.server: gevent.pywsgi.WSGIServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def up(self) -> "FaultProxy":
        self.server = gevent.pywsgi.WSGIServer(("127.0.0.1", self.port), self._app, log=None, error_log=None)
        self.server.start()
        self.port = self.server.server_port
        return self

    def down(self) -> None:
        if self.server is not None:
            # No grace: keep-alive connections must die with the listener, or
            # a "down" Manager would go on answering the worker.
            self.server.stop(timeout=0)
            self.server = None

    def answer(self, method: str, path_regex: str, status: int, body: typing.Any = b"",
               content_type: str = "text/plain", times: int = -1) -> None:
        if not isinstance(body, bytes):
            body = (json.dumps(body) + "\n").encode()
            content_type = "application/json"
        self.rules.append(Rule(method, re.compile(path_regex), status, body, content_type, times))

    def rewrite(self, method: str, path_regex: str, fn: typing.Callable[[typing.Any], typing.Any],
                times: int = 1) -> None:
        """Forward the request, then answer with ``fn(decoded JSON answer)``."""
        self.rewrites.append([method, re.compile(path_regex), fn, times])

    def clear(self) -> None:
        self.rules.clear()

    def _rule_for(self, method: str, path: str) -> Rule | None:
        for rule in self.rules:
            if rule.times != 0 and rule.method == method and rule.path.search(path):
                if rule.times > 0:
                    rule.times -= 1
                return rule
        return None

    def _app(self, environ, start_response):
        method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
        rule = self._rule_for(method, path)
        if rule is not None:
            self.log.append((method, path, rule.status))
            start_response(f"{rule.status} X", [("Content-Type", rule.content_type)])
            return [rule.body]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else None
        headers = {k: environ[h] for k, h in (("Content-Type", "CONTENT_TYPE"), ("Authorization", "HTTP_AUTHORIZATION"),
                                              ("User-Agent", "HTTP_USER_AGENT")) if environ.get(h)}
        query = environ.get("QUERY_STRING")
        resp = self.session.request(method, self.target_url + path + (f"?{query}" if query else ""),
                                    data=body, headers=headers, allow_redirects=False, timeout=30)
        self.log.append((method, path, resp.status_code))
        out_headers = [(k, v) for k, v in resp.headers.items()
                       if k.lower() in ("content-type", "www-authenticate", "location")]
        content = resp.content
        for rewrite in self.rewrites:
            if rewrite[3] != 0 and rewrite[0] == method and rewrite[1].search(path) and content:
                rewrite[3] -= 1
                content = (json.dumps(rewrite[2](json.loads(content))) + "\n").encode()
                break
        start_response(f"{resp.status_code} X", out_headers)
        return [content]
