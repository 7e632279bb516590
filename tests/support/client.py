"""Talking to the development Manager as tests need to: ``WorkerClient`` speaks the worker
API by hand, as the real worker does; the other helpers read the Manager's records."""
from __future__ import annotations

import base64
import datetime
import secrets

import requests

from tests.support.waiting import wait_until

UA = "Flamenco-Worker/9.9-test"


class WorkerClient:
    """Speaks the worker API with requests, as the real worker does."""

    def __init__(self, manager, task_types=("debug",), nickname="tester", platform="linux"):
        self.manager = manager
        self.task_types = list(task_types)
        self.nickname = nickname
        self.platform = platform
        self.secret = secrets.token_urlsafe(48)
        self.id = None

    def call(self, method, path, auth=True, **kwargs):
        # Connection: close, so that no idle keep-alive connection makes
        # DevManager.stop() wait for its grace period at the end of a test.
        headers = {"User-Agent": UA, "Connection": "close", **kwargs.pop("headers", {})}
        credentials = (self.id, self.secret) if auth else None
        return requests.request(method, self.manager.url + path, auth=credentials,
                                headers=headers, timeout=10, allow_redirects=False, **kwargs)

    def register(self, headers=None):
        body = {"secret": self.secret, "platform": self.platform,
                "supported_task_types": self.task_types, "nickname": self.nickname}
        response = self.call("POST", "register-worker", auth=False, json=body, headers=headers or {})
        if response.status_code == 200:
            self.id = response.json()["_id"]
        return response

    def join(self):
        """Register and sign on; returns self."""
        assert self.register().status_code == 200
        assert self.call("POST", "sign-on", json={}).status_code == 204
        return self

    def ask(self):
        return self.call("POST", "task")

    def take(self):
        """Ask for a task that must be there; returns its id."""
        response = self.ask()
        assert response.status_code == 200, response.text
        return response.json()["_id"]

    def update(self, task_id, **fields):
        return self.call("POST", f"tasks/{task_id}/update", json=fields)

    def may_i_run(self, task_id):
        response = self.call("GET", f"may-i-run/{task_id}")
        assert response.status_code == 200
        return response.json()

    def give_back(self, task_id):
        return self.call("POST", f"tasks/{task_id}/return")


def basic(worker_id: str, secret: str) -> str:
    """The Authorization header of HTTP basic authentication."""
    return "Basic " + base64.b64encode(f"{worker_id}:{secret}".encode()).decode()


def worker_id(manager) -> str:
    """The id of the (first) worker that registered, once one has."""
    return wait_until(lambda: manager.workers() and manager.workers()[0]["id"], what="a worker registered")


def requests_after(manager, entry, method=None, path=None) -> list[tuple[str, str, int]]:
    """Requests served after the first ``entry`` of the requests log."""
    log = manager.requests_log
    later = log[log.index(entry) + 1:]
    return [r for r in later if (method is None or r[0] == method) and (path is None or r[1] == path)]


def count(manager, method, path) -> int:
    return sum(1 for m, p, _ in manager.requests_log if m == method and p == path)


def verdicts(manager, task_id) -> list[str]:
    """Final statuses the worker reported for a task (none, when it gave it back)."""
    return [u["task_status"] for u in manager.task_updates(task_id) if u.get("task_status") not in (None, "active")]


def iso_seconds(timestamp: str) -> float:
    """Seconds since the epoch of an ISO 8601 UTC timestamp such as the Manager's ``received``."""
    return datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
