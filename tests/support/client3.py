"""The Flamenco 3 worker API spoken by hand (``V3Client``), as a worker speaks it, for
the tests of the Flamenco 3 development Manager; every answer with a body is checked
against the schema the document gives for it."""
import secrets

import requests

from fworker.devmanager.v3 import jobs
from fworker.devmanager.v3.schema import RESPONSES
from fworker.devmanager.v3.validate import validate

API = "api/v3/worker/"


class V3Client:
    """Speaks api/v3 with requests, as a worker does; checks every answer that has a
    body against the schema the document gives for it."""

    def __init__(self, manager, task_types=("misc",), name="tester", platform="linux"):
        self.manager = manager
        self.task_types = list(task_types)
        self.name = name
        self.platform = platform
        self.secret = secrets.token_hex(32)
        self.uuid = None

    def call(self, method, path, auth=True, operation=None, **kwargs):
        headers = {"Connection": "close", **kwargs.pop("headers", {})}
        credentials = (self.uuid, self.secret) if auth else None
        response = requests.request(method, self.manager.url + path, auth=credentials,
                                    headers=headers, timeout=10, allow_redirects=False, **kwargs)
        answer_schema = RESPONSES.get(operation, {}).get(response.status_code)
        if answer_schema:
            validate(response.json(), answer_schema)
        return response

    def register(self):
        body = {"secret": self.secret, "platform": self.platform,
                "supported_task_types": self.task_types, "name": self.name}
        response = self.call("POST", API + "register-worker", auth=False, json=body,
                             operation="registerWorker")
        if response.status_code == 200:
            self.uuid = response.json()["uuid"]
        return response

    def sign_on(self, **extra):
        body = {"name": self.name, "supported_task_types": self.task_types,
                "software_version": "test", **extra}
        return self.call("POST", API + "sign-on", json=body, operation="signOn")

    def state_changed(self, status):
        return self.call("POST", API + "state-changed", json={"status": status},
                         operation="workerStateChanged")

    def join(self):
        """Register, sign on and acknowledge the state the Manager asks for; returns self."""
        assert self.register().status_code == 200
        response = self.sign_on()
        assert response.status_code == 200
        assert self.state_changed(response.json()["status_requested"]).status_code == 204
        return self

    def ask(self):
        return self.call("POST", API + "task", operation="scheduleTask")

    def take(self):
        response = self.ask()
        assert response.status_code == 200, response.text
        return response.json()["uuid"]

    def update(self, task_id, **fields):
        return self.call("POST", f"{API}task/{task_id}", json=fields, operation="taskUpdate")

    def may_i_run(self, task_id):
        response = self.call("GET", f"{API}task/{task_id}/may-i-run", operation="mayWorkerRun")
        assert response.status_code == 200, response.text
        return response.json()

    def state(self):
        return self.call("GET", API + "state", operation="workerState")

    def sign_off(self):
        return self.call("POST", API + "sign-off", operation="signOff")

    def preview(self, task_id, data, content_type="image/png", **kwargs):
        return self.call("POST", f"{API}task/{task_id}/output-produced", data=data,
                         headers={"Content-Type": content_type}, operation="taskOutputProduced",
                         **kwargs)


def one_task_job(*commands, task_type="misc", name="job"):
    return jobs.job(name, [jobs.task("t0", list(commands) or [jobs.echo("hi")], task_type)])


def assert_all_valid(manager):
    assert manager.requests, "no request reached the Manager"
    assert manager.invalid_requests() == []
