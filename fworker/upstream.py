"""HTTP to the Manager: one keep-alive session, one method per endpoint.

Transport failures (refused, reset, timeout) and 5xx answers raise
``RetryLater``; every other answer is returned for the caller to judge,
because what a 404 or 409 means depends on the endpoint.  Answers that
should be JSON but are not raise ``RetryLater`` naming the endpoint.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import random
import sys
import typing
import urllib.parse
import warnings

import requests
import requests.adapters
import requests.utils
import urllib3.exceptions

from fworker.errors import ConfigError, RetryLater
from fworker.version import __version__

log = logging.getLogger(__name__)


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

    def set_credentials(self, worker_id: str, secret: str) -> None:
        self.worker_id = worker_id
        self._secret = secret

    def request(self, method: str, path: str, *, json: typing.Any = None, auth: bool = True,
                headers: dict[str, str] | None = None) -> Answer:
        url = urllib.parse.urljoin(self.manager_url, path.lstrip("/"))
        try:
            resp = self.session.request(
                method, url, json=json, headers=headers, timeout=self.timeout, verify=self.verify,
                auth=(self.worker_id, self._secret) if auth and self.worker_id else None,
                allow_redirects=False,
            )
        except requests.RequestException as ex:
            raise RetryLater(f"{method} {path}: Manager not reachable: {_short(ex)}") from None
        if resp.status_code >= 500:
            raise RetryLater(f"{method} {path}: Manager answered {resp.status_code} {_snippet(resp.text)}")
        body: typing.Any = None
        if resp.headers.get("Content-Type", "").startswith("application/json") and resp.content:
            try:
                body = resp.json()
            except ValueError:
                raise RetryLater(f"{method} {path}: Manager answered {resp.status_code} with malformed JSON: "
                                 f"{_snippet(resp.text)}") from None
        return Answer(resp.status_code, body, resp.text)

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
        return self.request("POST", "sign-off")

    def fetch_task(self) -> Answer:
        return self.request("POST", "task")

    def send_update(self, task_id: str, payload: dict) -> Answer:
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
        return self.request("POST", "output-produced", json={"paths": paths})


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


def _short(ex: Exception) -> str:
    text = str(ex)
    # urllib3 wraps the reason several levels deep; the last part says most.
    if "Caused by" in text:
        text = text.rsplit("Caused by", 1)[-1].strip(" ()'\"")
    return _snippet(text, 200)


def _snippet(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
