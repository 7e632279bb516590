"""The Flamenco 3 edge: the worker API of a Flamenco 3 Manager (api/v3).

What it does for each endpoint and answer is described in docs/PROTOCOL.md §8.
It turns the Manager's answers into the neutral form of ``fworker.edge.base``:

- a status request's names: ``offline`` and ``restart`` become a shutdown
  (``restart`` also sets ``exit_code``), ``awake``/``asleep`` stay, anything
  else (``error`` included) is left to ``fworker.states``, which sleeps;
- 403 (unknown or wrong credentials) becomes the core's 401 "sign on again";
- an AssignedTask becomes a ``fworker.task.Task`` (UUID ids, ``parameters``
  as the command's settings, the step counts);
- a queued update becomes a TaskUpdate ``{taskStatus, activity, log,
  steps_completed}``: never ``soft-failed`` (the Manager decides that), the
  log sent as lines the Manager appends, each ending in a newline.

Credentials (the worker's UUID and the secret it chose) live in a file of
their own, never in the 2.x one: ``credentials_file``.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import os
import secrets
import typing
import uuid as uuidlib

import configobj

from fworker import config, credentials, statefiles, tools
from fworker.edge.base import V3
from fworker.errors import ConfigError, Fatal, RetryLater
from fworker.preview import PreviewUploader
from fworker.task import BadTask, CommandSpec, Task, command_spec, shown, text_field
from fworker.upstream import BRIEF_DEADLINE, Answer, Upstream, platform_name
from fworker.version import __version__

log = logging.getLogger(__name__)

API = "api/v3/worker/"
# Flamenco 3's own task types: announced when task_types is left at the 2.x default.
DEFAULT_TASK_TYPES = ("blender", "ffmpeg", "file-management", "misc")
# What a worker may report; the Manager alone decides soft- or hard-failure.
SENDABLE_STATUSES = frozenset({"active", "completed", "failed"})
# The Manager's worker statuses a request may name, in the core's words.
_REQUESTS = {"offline": "shutdown", "restart": "shutdown"}


def credentials_file(v2_path: str, instance: str = statefiles.DEFAULT_INSTANCE) -> str:
    """The v3 credentials file beside the 2.x one: ``~/.flamenco-worker.cfg``
    → ``~/.flamenco-worker-v3.cfg``.  Two files, so that a worker moved from
    one Manager generation to the other never sends one's secret to the other.
    An instance's own file is named by fworker.statefiles
    (``~/.flamenco-worker-v3@gpu0.cfg``)."""
    return statefiles.credentials_beside(v2_path, instance)


def read_credentials(path: str) -> tuple[str, str]:
    """(uuid, secret) from ``path``; empty strings when there are none yet."""
    if not os.path.exists(path):
        return "", ""
    try:
        cfg = configobj.ConfigObj(path, encoding="utf-8", interpolation=False, file_error=True)
    except (configobj.ConfigObjError, OSError, UnicodeDecodeError) as ex:
        raise ConfigError(f"Flamenco 3 credentials file {path}: cannot be read: {ex}") from None
    section = cfg.get(config.SECTION, {})
    worker_id, secret = section.get("worker_id", ""), section.get("worker_secret", "")
    if not (isinstance(worker_id, str) and isinstance(secret, str)):
        raise ConfigError(f"Flamenco 3 credentials file {path}: worker_id and worker_secret must be single values")
    return worker_id, secret


def announced_task_types(settings: config.Settings) -> list[str]:
    configured = tuple(settings.task_types)
    if configured == tuple(config.DEFAULT_TASK_TYPES.split()):
        return list(DEFAULT_TASK_TYPES)
    return list(configured)


class V3Edge:
    dialect = V3
    shutdown_fails_task = False  # a failure counts against this worker: soft-fail, blocklisting
    can_give_back = False  # no such endpoint: sign-off or leaving `awake` re-queues
    drops_task_on_404 = True
    may_i_run_max = 10.0  # the Manager expects may-i-run about this often (the Go worker's rate)

    def __init__(self, upstream: Upstream, settings: config.Settings, credentials_path: str | None,
                 manager_version: str = "", *, task_types: typing.Sequence[str] | None = None):
        self.upstream = upstream
        self.settings = settings
        self.manager_version = manager_version
        self.path = credentials_file(credentials_path, settings.instance) if credentials_path else None
        self.name = settings.effective_nickname()
        self._task_types = list(task_types) if task_types is not None else announced_task_types(settings)
        self.exit_code = 0
        self._uploaders: dict[str, PreviewUploader] = {}
        # A command's plain `ffmpeg` is the configured one; without it PNG and JPEG go as they are.
        self._ffmpeg = tools.locate("ffmpeg", settings.ffmpeg_exe)[0]
        self.worker_id, self._secret = read_credentials(self.path) if self.path else ("", "")
        if self.worker_id and self._secret:
            upstream.set_credentials(self.worker_id, self._secret)

    def task_types(self) -> list[str]:
        return list(self._task_types)

    # Registration and sign-on.

    def establish(self, reregister: bool) -> str | None:
        if reregister or not (self.worker_id and self._secret):
            self.register()
        return self.sign_on()

    def register(self) -> None:
        secret = secrets.token_hex(32)  # 64 characters: within bcrypt's 72 bytes
        body = {"secret": secret, "platform": platform_name(), "supported_task_types": self._task_types,
                "name": self.name}
        answer = self.upstream.request("POST", API + "register-worker", json=body, auth=False)
        worker_id = answer.body.get("uuid") if answer.status == 200 and isinstance(answer.body, dict) else None
        if not isinstance(worker_id, str) or not worker_id:
            raise RetryLater(f"registration: unexpected answer {answer.status} {answer.text.strip()[:200]!r}")
        self.upstream.set_credentials(worker_id, secret)
        self.worker_id, self._secret = worker_id, secret
        if self.path is not None:
            credentials.save_credentials(worker_id, secret, self.path)
            log.info("registered at the Flamenco 3 Manager as worker %s; credentials stored in %s",
                     worker_id, self.path)
        else:
            log.info("registered at the Flamenco 3 Manager as worker %s (credentials not stored)", worker_id)

    def sign_on(self) -> str | None:
        """Sign on; refused (403: the Manager does not know these credentials)
        → register once more, then sign on.  The state the Manager asks for."""
        if not (self.worker_id and self._secret):
            self.register()
        answer = self._sign_on_once()
        if answer.status == 403:
            log.warning("the Manager refused the sign-on of worker %s (403); registering again", self.worker_id)
            self.register()
            answer = self._sign_on_once()
        if answer.status == 403:
            raise Fatal("sign-on refused (403) right after a fresh registration; is this the right Manager?")
        requested = answer.body.get("status_requested") if isinstance(answer.body, dict) else None
        if answer.status != 200 or not isinstance(requested, str):
            raise RetryLater(f"sign-on: unexpected answer {answer.status} {answer.text.strip()[:200]!r}")
        log.info("signed on to the Flamenco 3 Manager %s as worker %s (%s); it asks for %r",
                 self.upstream.manager_url, self.worker_id, self.name, requested)
        return self._translated(requested)

    def _sign_on_once(self) -> Answer:
        body: dict[str, typing.Any] = {"name": self.name, "supported_task_types": self._task_types,
                                       "software_version": f"fworker {__version__}"}
        if self.settings.restart_exit_code:
            body["can_restart"] = True
        return self.upstream.request("POST", API + "sign-on", json=body)

    def sign_off(self) -> Answer:
        return self.upstream.request("POST", API + "sign-off", deadline=BRIEF_DEADLINE)

    # Tasks.

    def fetch_task(self) -> Answer:
        return self._neutral(self.upstream.request("POST", API + "task"))

    def parse_task(self, body: typing.Any) -> Task:
        return parse_assigned_task(body)

    def send_update(self, task_id: str, payload: dict[str, typing.Any]) -> Answer:
        body = encode_update(payload)
        if not body:
            # Progress percentages and metrics: a Flamenco 3 Manager has no place for them.
            return Answer(204, None, "")
        return self._neutral(self.upstream.request("POST", API + f"task/{task_id}", json=body))

    def return_task(self, task_id: str) -> Answer:
        raise NotImplementedError("a Flamenco 3 Manager has no way to hand a task back (can_give_back)")

    def may_i_run(self, task_id: str) -> Answer:
        answer = self._neutral(self.upstream.request("GET", API + f"task/{task_id}/may-i-run"))
        body = answer.body
        if answer.status != 200 or not isinstance(body, dict) or not isinstance(body.get("mayKeepRunning"), bool):
            return answer
        # statusChangeRequested says only *that* a state is asked for; the next
        # POST task (423) or GET state says which.
        return Answer(200, {"may_keep_running": body["mayKeepRunning"], "reason": str(body.get("reason") or ""),
                            "status_requested": None}, answer.text)

    def output_produced(self, task_id: str, paths: list[str]) -> Answer:
        """The newest image goes to the preview uploader, which converts and
        sends it in a greenlet of its own (at most one per
        ``output_produced_interval``): never waited for here."""
        if not paths or not task_id:
            return Answer(204, None, "")
        uploader = self._uploaders.get(task_id)
        if uploader is None:
            # One per task, so that an image is always sent for the task that made it;
            # the previous task's upload, if one is still under way, is not worth waiting for.
            self.close()
            uploader = PreviewUploader(functools.partial(self._send_preview, task_id), self._ffmpeg,
                                       self.settings.output_produced_interval).start()
            self._uploaders[task_id] = uploader
        uploader.offer(paths[-1])
        return Answer(204, None, "")

    def _send_preview(self, task_id: str, data: bytes, content_type: str) -> int:
        answer = self.upstream.request("POST", API + f"task/{task_id}/output-produced", data=data,
                                       content_type=content_type, deadline=BRIEF_DEADLINE)
        if answer.status not in (202, 204):
            log.debug("output-produced of task %s: %d %s", task_id, answer.status, answer.text.strip()[:200])
        return answer.status

    def close(self) -> None:
        for uploader in self._uploaders.values():
            uploader.stop()
        self._uploaders.clear()

    # Worker states.

    def status_change(self) -> Answer:
        return self._neutral(self.upstream.request("GET", API + "state"))

    def ack_status_change(self, status: str) -> Answer:
        return self._neutral(self.upstream.request("POST", API + "state-changed", json={"status": status}))

    def _neutral(self, answer: Answer) -> Answer:
        if answer.status == 403:
            return Answer(401, answer.body, answer.text)
        if answer.status in (200, 423) and isinstance(answer.body, dict) and "status_requested" in answer.body:
            requested = answer.body["status_requested"]
            if isinstance(requested, str):
                return Answer(answer.status, {**answer.body, "status_requested": self._translated(requested)},
                              answer.text)
        return answer

    def _translated(self, requested: str) -> str:
        if requested == "restart":
            self.exit_code = self.settings.restart_exit_code
            if not self.exit_code:
                log.warning("the Manager asks this worker to restart, but restart_exit_code is not set; "
                            "signing off and exiting with 0")
        return _REQUESTS.get(requested, requested)


def encode_update(payload: dict[str, typing.Any]) -> dict[str, typing.Any]:
    """A queued (neutral) update as a Flamenco 3 TaskUpdate."""
    body: dict[str, typing.Any] = {}
    status = payload.get("task_status")
    if status in SENDABLE_STATUSES:
        body["taskStatus"] = status
    elif status is not None:
        log.warning("not sending task status %r to a Flamenco 3 Manager", status)
    if isinstance(payload.get("activity"), str):
        body["activity"] = payload["activity"]
    text = payload.get("log")
    if isinstance(text, str) and text:
        # The Manager appends: every line ends in a newline, or the next batch's
        # first line would continue this batch's last.
        body["log"] = text if text.endswith("\n") else text + "\n"
    steps = payload.get("steps_completed")
    if isinstance(steps, int) and not isinstance(steps, bool):
        body["steps_completed"] = steps
    return body


def parse_assigned_task(body: typing.Any) -> Task:
    """A Flamenco 3 AssignedTask as a ``Task``; BadTask naming what is wrong."""
    if not isinstance(body, dict):
        raise BadTask(f"task is not a JSON object but {type(body).__name__}")
    task_id = body.get("uuid")
    if not isinstance(task_id, str) or not _is_uuid(task_id):
        raise BadTask(f"task has no valid uuid: {shown(task_id)}")

    commands = body.get("commands")
    if not isinstance(commands, list):
        raise BadTask(f"task {task_id}: field 'commands' must be a list, not {type(commands).__name__}", task_id)
    specs = [_command(task_id, index, cmd) for index, cmd in enumerate(commands)]
    steps_total = body.get("steps_total", 0)
    if not isinstance(steps_total, int) or isinstance(steps_total, bool) or steps_total < 0:
        steps_total = 0  # before 3.8 there is none; a bad one only loses the cap
    name, job, task_type = (text_field(body, key, task_id) for key in ("name", "job", "task_type"))
    return Task(task_id, name, job, task_type, tuple(specs), body, steps_total)


def _command(task_id: str, index: int, cmd: typing.Any) -> CommandSpec:
    spec = command_spec(task_id, index, cmd, "parameters")
    steps = cmd.get("total_step_count", 0)
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise BadTask(f"task {task_id}: commands[{index}] ({spec.name}): 'total_step_count' must be a whole number, "
                      f"not {shown(steps)}", task_id)
    return dataclasses.replace(spec, total_step_count=steps)


def _is_uuid(text: str) -> bool:
    try:
        uuidlib.UUID(text)
    except ValueError:
        return False
    return len(text) == 36

