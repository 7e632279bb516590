"""The Flamenco 3 worker API as data: the project's own description of it.

Written from the facts of the official OpenAPI document
(``pkg/api/flamenco-openapi.yaml`` in the Flamenco repository, 3.9-beta, April
2026): every schema below names the ``components/schemas`` entry it describes,
and OPERATIONS names each ``operationId``.  Only what a worker sends or receives
is here.  The dialect is a subset of JSON Schema that validate.py understands:
``type``, ``required``, ``enum``, ``properties``, ``items``, ``$ref`` (to a name
in SCHEMAS), ``format`` (``int32``, ``int64``, ``binary``) and ``nullable``.
``additionalProperties`` is never set: the Manager ignores undeclared fields.
"""
import typing

# A node of the JSON Schema subset above, as plain data.
Schema = dict[str, typing.Any]


class Operation(typing.TypedDict):
    """How an operation is called; see OPERATIONS."""

    method: str
    path: str
    auth: bool
    body: typing.NotRequired[str]
    types: typing.NotRequired[list[str]]


# components/schemas/WorkerStatus
WORKER_STATUSES = ["starting", "awake", "asleep", "error", "testing", "offline", "restart"]
# components/schemas/TaskStatus
TASK_STATUSES = ["active", "canceled", "completed", "failed", "queued", "soft-failed", "paused"]

_STRINGS = {"type": "array", "items": {"type": "string"}}

SCHEMAS: dict[str, Schema] = {
    "FlamencoVersion": {
        "type": "object", "required": ["version", "shortversion", "name", "git"],
        "properties": {"version": {"type": "string"}, "shortversion": {"type": "string"},
                       "name": {"type": "string"}, "git": {"type": "string"}},
    },
    "WorkerStatus": {"type": "string", "enum": WORKER_STATUSES},
    "TaskStatus": {"type": "string", "enum": TASK_STATUSES},
    "WorkerRegistration": {
        "type": "object", "required": ["secret", "platform", "supported_task_types", "name"],
        "properties": {"secret": {"type": "string"}, "platform": {"type": "string"},
                       "supported_task_types": _STRINGS, "name": {"type": "string"}},
    },
    # Two departures from the document, so that the real Manager's answers validate:
    # ``current_task`` is listed as required but never declared nor sent, and
    # ``status`` is a WorkerStatus in the document but ``""`` in every answer (a
    # worker has no status until it signs on).
    "RegisteredWorker": {
        "type": "object",
        "required": ["uuid", "name", "address", "status", "platform", "software",
                     "supported_task_types"],
        "properties": {"uuid": {"type": "string"}, "name": {"type": "string"},
                       "address": {"type": "string"},
                       "status": {"type": "string"}, "platform": {"type": "string"},
                       "software": {"type": "string"}, "supported_task_types": _STRINGS},
    },
    "WorkerSignOn": {
        "type": "object", "required": ["name", "supported_task_types", "software_version"],
        "properties": {"name": {"type": "string"}, "supported_task_types": _STRINGS,
                       "software_version": {"type": "string"}, "can_restart": {"type": "boolean"}},
    },
    "WorkerStateChange": {
        "type": "object", "required": ["status_requested"],
        "properties": {"status_requested": {"$ref": "WorkerStatus"}},
    },
    "WorkerStateChanged": {
        "type": "object", "required": ["status"],
        "properties": {"status": {"$ref": "WorkerStatus"}},
    },
    "Command": {
        "type": "object", "required": ["name", "parameters", "total_step_count"],
        "properties": {"name": {"type": "string"}, "parameters": {"type": "object"},
                       "total_step_count": {"type": "integer"}},
    },
    "AssignedTask": {
        "type": "object",
        "required": ["uuid", "job", "name", "status", "priority", "job_priority", "job_type",
                     "task_type", "commands", "steps_completed", "steps_total"],
        "properties": {
            "uuid": {"type": "string"}, "job": {"type": "string"}, "name": {"type": "string"},
            "status": {"$ref": "TaskStatus"}, "priority": {"type": "integer"},
            "job_priority": {"type": "integer"}, "job_type": {"type": "string"},
            "task_type": {"type": "string"},
            "commands": {"type": "array", "items": {"$ref": "Command"}},
            "steps_completed": {"type": "integer"}, "steps_total": {"type": "integer"},
        },
    },
    # Every field optional: an omitted one leaves the task's value as it was.
    "TaskUpdate": {
        "type": "object",
        "properties": {"taskStatus": {"$ref": "TaskStatus"}, "activity": {"type": "string"},
                       "log": {"type": "string"}, "steps_completed": {"type": "integer"}},
    },
    "MayKeepRunning": {
        "type": "object", "required": ["mayKeepRunning", "reason", "statusChangeRequested"],
        "properties": {"mayKeepRunning": {"type": "boolean"}, "reason": {"type": "string"},
                       "statusChangeRequested": {"type": "boolean"}},
    },
    "Error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "integer", "format": "int32"},
                       "message": {"type": "string"}},
    },
    "SecurityError": {
        "type": "object", "required": ["message"], "properties": {"message": {"type": "string"}},
    },
    # requestBody of taskOutputProduced: raw bytes, one of IMAGE_TYPES.
    "Image": {"type": "string", "format": "binary"},
}

JSON = "application/json"
IMAGE_TYPES = ["image/jpeg", "image/png"]

# operationId -> how it is called.  ``body``: the schema of the request body
# (required whenever there is one), ``types``: the Content-Types the document
# declares for it; ``auth``: HTTP Basic (securitySchemes/worker_auth).
OPERATIONS: dict[str, Operation] = {
    "getVersion": {"method": "GET", "path": "/api/v3/version", "auth": False},
    "registerWorker": {"method": "POST", "path": "/api/v3/worker/register-worker", "auth": False,
                       "body": "WorkerRegistration", "types": [JSON]},
    "signOn": {"method": "POST", "path": "/api/v3/worker/sign-on", "auth": True,
               "body": "WorkerSignOn", "types": [JSON]},
    "signOff": {"method": "POST", "path": "/api/v3/worker/sign-off", "auth": True},
    "workerState": {"method": "GET", "path": "/api/v3/worker/state", "auth": True},
    "workerStateChanged": {"method": "POST", "path": "/api/v3/worker/state-changed", "auth": True,
                           "body": "WorkerStateChanged", "types": [JSON]},
    "scheduleTask": {"method": "POST", "path": "/api/v3/worker/task", "auth": True},
    "taskUpdate": {"method": "POST", "path": "/api/v3/worker/task/{task_id}", "auth": True,
                   "body": "TaskUpdate", "types": [JSON]},
    "mayWorkerRun": {"method": "GET", "path": "/api/v3/worker/task/{task_id}/may-i-run",
                     "auth": True},
    "taskOutputProduced": {"method": "POST", "path": "/api/v3/worker/task/{task_id}/output-produced",
                           "auth": True, "body": "Image", "types": IMAGE_TYPES},
}

# What a worker gets back, per operation and status (for tests that check answers).
RESPONSES: dict[str, dict[int, str | None]] = {
    "getVersion": {200: "FlamencoVersion"},
    "registerWorker": {200: "RegisteredWorker"},
    "signOn": {200: "WorkerStateChange"},
    "signOff": {204: None},
    "workerState": {200: "WorkerStateChange", 204: None},
    "workerStateChanged": {204: None},
    "scheduleTask": {200: "AssignedTask", 204: None, 403: "SecurityError", 409: "Error",
                     423: "WorkerStateChange"},
    "taskUpdate": {204: None, 409: "Error"},
    "mayWorkerRun": {200: "MayKeepRunning"},
    "taskOutputProduced": {202: None, 411: "Error", 413: "Error", 415: "Error", 429: "Error"},
}

# The Manager's limit on one preview image (last_rendered.MaxImageSizeBytes).
MAX_IMAGE_BYTES = 25 * 1024 * 1024
