"""HTTP to the Manager: one keep-alive session, one method per endpoint.

Transport failures (refused, reset, timeout) and 5xx answers raise
``RetryLater``; every other answer is returned for the caller to judge,
because what a 404 or 409 means depends on the endpoint.  Answers that
should be JSON but are not raise ``RetryLater`` naming the endpoint.

Every request has one deadline for all of it (connect, send, headers, body):
a per-read timeout alone lets a Manager that sends a byte now and then hold
a request for ever.  Answers larger than ``MAX_ANSWER_BYTES`` are refused
without being read whole.
"""
from __future__ import annotations

import dataclasses
import json as jsonlib
import logging
import os
import random
import sys
import time
import typing
import urllib.parse
import warnings

import gevent
import requests
import requests.adapters
import requests.utils
import urllib3.exceptions

from fworker.errors import ConfigError, RetryLater
from fworker.version import __version__

log = logging.getLogger(__name__)

# The largest answer read from the Manager.  A 2.x task is a few KB of JSON,
# but a job may carry large settings (the reliability suite hands out a task
# with 5 MB of them): 16 MiB leaves room for that three times over, while a
# hostile or broken Manager can no longer make every request download 50 MB.
MAX_ANSWER_BYTES = 16 * 1024 * 1024
_CHUNK_BYTES = 64 * 1024
# For requests nobody retries, which a stopping worker sends last: the sign-off
# (a Manager that does not take it re-queues our tasks after its own timeout
# anyway) and the fire-and-forget report of produced output.  A service manager
# waiting for the stop should not wait the full http_timeout for either.
BRIEF_DEADLINE = 10.0


@dataclasses.dataclass
class Answer:
    status: int
    body: typing.Any  # decoded JSON, or the text of a non-JSON answer, or None
    text: str


class Upstream:
    """``tls_verify``: check the Manager's certificate (on by default; off only on
    explicit request, loudly).  ``tls_ca_bundle``: a PEM file of authorities to
    trust instead of the system's (a studio's own CA)."""

    def __init__(self, manager_url: str, *, timeout: float = 30.0, tls_verify: bool = True,
                 tls_ca_bundle: str = ""):
        self.manager_url = manager_url
        self.timeout = timeout
        self.session = requests.Session()
        # requests would read proxy and CA settings from the environment again
        # on every request (about a fifth of the worker's cost of a request);
        # the Manager's address does not change, so read them once, here.
        self.session.trust_env = False
        self.session.proxies = requests.utils.get_environ_proxies(manager_url)
        self.verify = _verify_setting(manager_url, tls_verify, tls_ca_bundle)
        # Several greenlets (fetcher, flusher, may-i-run poller) share it.
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=16)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = f"Flamenco-Worker/{__version__}"
        self.worker_id = ""
        self._secret = ""
        # The Manager's last complete answer below 500 (any request, any
        # greenlet): wall clock for people, monotonic for how long ago.
        self.answered_at: float | None = None
        self.answered_monotonic: float | None = None

    def set_credentials(self, worker_id: str, secret: str) -> None:
        self.worker_id = worker_id
        self._secret = secret

    def request(self, method: str, path: str, *, json: typing.Any = None, auth: bool = True,
                headers: dict[str, str] | None = None, deadline: float | None = None,
                data: bytes | None = None, content_type: str = "") -> Answer:
        """One request, all of it within ``deadline`` seconds (at most the
        ``timeout`` given at construction).  ``data``: a raw body (an image),
        sent with ``content_type`` and its Content-Length, instead of ``json``."""
        url = urllib.parse.urljoin(self.manager_url, path.lstrip("/"))
        if data is not None:
            if json is not None:
                raise ValueError("request(): json and data are exclusive")
            headers = {**(headers or {}), "Content-Type": content_type or "application/octet-stream",
                       "Content-Length": str(len(data))}
        seconds = self.timeout if deadline is None else min(deadline, self.timeout)
        timer = gevent.Timeout(seconds)
        try:
            with timer:
                status, content_type, content, encoding, wait = self._exchange(
                    method, url, path, json=json, data=data, headers=headers, timeout=seconds,
                    auth=(self.worker_id, self._secret) if auth and self.worker_id else None)
        except gevent.Timeout as ex:
            if ex is not timer:
                raise
            raise RetryLater(f"{method} {path}: no complete answer from the Manager within {seconds:g} s "
                             "(http_timeout)") from None
        except requests.RequestException as ex:
            raise RetryLater(f"{method} {path}: Manager not reachable: {_short(ex)}") from None
        text = _decoded(content, encoding)
        if status < 500:
            self.answered_at, self.answered_monotonic = time.time(), time.monotonic()
        if status >= 500:
            raise RetryLater(f"{method} {path}: Manager answered {status} {_snippet(text)}", retry_after=wait)
        body: typing.Any = None
        if content_type.startswith("application/json") and content:
            try:
                body = jsonlib.loads(content)
            except ValueError:
                raise RetryLater(f"{method} {path}: Manager answered {status} with malformed JSON: "
                                 f"{_snippet(text)}") from None
        return Answer(status, body, text)

    def _exchange(self, method: str, url: str, path: str,
                  **kwargs: typing.Any) -> tuple[int, str, bytes, str, float | None]:
        """Send, then read the answer in chunks, refusing one that is too large.
        The connection goes back to the pool only once its answer was read
        completely: on a deadline, a kill or a refusal it is closed instead."""
        resp = self.session.request(method, url, verify=self.verify, allow_redirects=False, stream=True, **kwargs)
        try:
            announced = resp.headers.get("Content-Length", "")
            if announced.strip().isdigit() and int(announced) > MAX_ANSWER_BYTES:
                raise RetryLater(f"{method} {path}: the Manager's answer ({resp.status_code}) announces "
                                 f"{int(announced)} bytes, more than the {_mib(MAX_ANSWER_BYTES)} this worker "
                                 "reads; not read")
            chunks, size = [], 0
            for chunk in resp.iter_content(_CHUNK_BYTES):
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    raise RetryLater(f"{method} {path}: the Manager's answer ({resp.status_code}) is longer than "
                                     f"the {_mib(MAX_ANSWER_BYTES)} this worker reads; not read further")
                chunks.append(chunk)
            return (resp.status_code, resp.headers.get("Content-Type", ""), b"".join(chunks), resp.encoding or "",
                    _retry_after(resp.headers.get("Retry-After", "")))
        finally:
            resp.close()

    # One method per endpoint (docs/PROTOCOL.md §3).

    def register(self, secret: str, task_types: list[str], nickname: str,
                 token: str | None = None) -> Answer:
        body = {"secret": secret, "platform": platform_name(), "supported_task_types": task_types,
                "supported_job_types": task_types, "nickname": nickname}
        headers = {"Authorization": f"Bearer {token}"} if token else None
        return self.request("POST", "register-worker", json=body, auth=False, headers=headers)

    def sign_on(self, task_types: list[str], nickname: str) -> Answer:
        return self.request("POST", "sign-on", json={"supported_task_types": task_types, "nickname": nickname})

    def sign_off(self) -> Answer:
        return self.request("POST", "sign-off", deadline=BRIEF_DEADLINE)

    def fetch_task(self) -> Answer:
        return self.request("POST", "task")

    def send_update(self, task_id: str, payload: dict[str, typing.Any]) -> Answer:
        return self.request("POST", f"tasks/{task_id}/update", json=payload)

    def return_task(self, task_id: str) -> Answer:
        return self.request("POST", f"tasks/{task_id}/return")

    def may_i_run(self, task_id: str) -> Answer:
        return self.request("GET", f"may-i-run/{task_id}")

    def status_change(self) -> Answer:
        return self.request("GET", "status-change")

    def ack_status_change(self, status: str) -> Answer:
        return self.request("POST", f"ack-status-change/{status}")

    def output_produced(self, paths: list[str]) -> Answer:
        return self.request("POST", "output-produced", json={"paths": paths}, deadline=BRIEF_DEADLINE)


class Killable:
    """``fn()`` in a greenlet of its own, so that another greenlet can stop it
    at once (``kill``) instead of waiting for its requests' deadlines.  The
    connection of a request killed half-way is closed, not reused."""

    def __init__(self, fn: typing.Callable[[], typing.Any]):
        self._outcome: list[tuple[bool, typing.Any]] = []
        self._greenlet = gevent.spawn(self._capture, fn)

    def result(self) -> typing.Any:
        """What ``fn`` returned, or the exception it raised; ``RetryLater`` if killed."""
        self._greenlet.join()
        if not self._outcome:
            raise RetryLater("stopped waiting for the Manager: shutting down")
        done, value = self._outcome[0]
        if done:
            return value
        raise value

    def kill(self) -> None:
        # Not from inside ``fn`` itself (a status poll that asks for a
        # shutdown): it ends by itself, right after.
        if self._greenlet is not gevent.getcurrent():
            self._greenlet.kill(block=False)

    def _capture(self, fn: typing.Callable[[], typing.Any]) -> None:
        # An exception goes to the caller of result(), instead of being
        # printed by gevent as the crash of a greenlet.
        try:
            self._outcome.append((True, fn()))
        except Exception as ex:  # noqa: BLE001  (raised again by result())
            self._outcome.append((False, ex))


def _verify_setting(manager_url: str, tls_verify: bool, tls_ca_bundle: str) -> bool | str:
    """What ``requests`` needs as ``verify``; a missing CA bundle is a configuration error."""
    if not tls_verify:
        log.warning("TLS certificate verification is OFF (tls_verify = false): anyone on the network path "
                    "to %s can pose as the Manager and learn this worker's secret", manager_url)
        # Said once, loudly, here; urllib3 would repeat it on every request.
        warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
        return False
    if tls_ca_bundle:
        if not os.path.isfile(tls_ca_bundle):
            raise ConfigError(f"tls_ca_bundle = {tls_ca_bundle!r}: no such file")
        return tls_ca_bundle
    # As requests does with trust_env: an explicit tls_ca_bundle wins over these.
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True


def platform_name() -> str:
    if sys.platform.startswith("linux"):
        return "linux"
    if sys.platform == "darwin":
        return "darwin"
    if sys.platform.startswith("win"):
        return "windows"
    return sys.platform


class Backoff:
    """Exponential backoff with full jitter, capped, so that a hundred
    workers retrying after a Manager restart do not arrive in lock-step."""

    growth = 2  # the ceiling's factor per failure (bench/jittersim.py weighs another)

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None):
        self.initial = initial
        self.maximum = maximum
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.maximum, self.initial * (self.growth ** min(self.failures, 30)))
        self.failures += 1
        # Nearly full jitter: a farm of workers retrying after a Manager
        # restart spreads over the whole interval instead of its upper half
        # (bench 6 saw 12 % of 50 workers in one 100 ms window with [c/2, c]).
        return self._rng.uniform(ceiling / 20, ceiling)

    def reset(self) -> None:
        self.failures = 0


def _decoded(content: bytes, encoding: str) -> str:
    try:
        return content.decode(encoding or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know, named by the Manager
        return content.decode("utf-8", errors="replace")


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):g} MiB"


def _retry_after(value: str) -> float | None:
    """A Retry-After in seconds (the Flamenco 3 Manager's form); None otherwise."""
    value = value.strip()
    return float(value) if value.isdigit() else None


def _short(ex: Exception) -> str:
    text = str(ex)
    # urllib3 wraps the reason several levels deep; the last part says most.
    if "Caused by" in text:
        text = text.rsplit("Caused by", 1)[-1].strip(" ()'\"")
    return _snippet(text, 200)


def _snippet(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
