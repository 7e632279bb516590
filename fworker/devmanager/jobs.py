"""Jobs for the development Manager: the submission format and its rules.

A job is submitted as one JSON object (``flamenco-dev-manager submit FILE``,
``POST /dev/jobs`` or ``DevManager.submit_job(dict)``)::

    {"name": "demo", "job_type": "debug", "priority": 50, "project": "", "user": "",
     "tasks": [{"name": "hello", "task_type": "debug", "priority": 50, "parents": [],
                "commands": [{"name": "echo", "settings": {"message": "hi"}}]}]}

Job fields:

- ``name`` (string, required, not empty)
- ``job_type`` (string, required, not empty)
- ``priority`` (integer, default 50): higher runs first, before task priority
- ``project``, ``user`` (string, default ""): "" or a 24-hex id, copied to each task
- ``tasks`` (array, required, at least one task)

Task fields:

- ``name`` (string, required, unique within the job)
- ``task_type`` (string, required): only workers supporting it get the task
- ``priority`` (integer, default 50)
- ``parents`` (array of task names of this job, default []): the task is
  scheduled only once all of them are ``completed``; cycles are refused
- ``commands`` (array, required, may be empty): each ``{"name": string,
  "settings": object}``, ``settings`` defaulting to ``{}``

Unknown keys are refused (a misspelt ``prority`` would otherwise be silently
ignored).  Integers must be JSON integers.  Every error names the field, as
in ``tasks[1].commands[0].name: must not be empty``.

Settings are passed to the worker as given, except that ``{name}``
placeholders in top-level string settings are replaced by the Manager's
variables for the worker's platform, as the real Manager does.

A job's status is derived from its tasks (see :func:`job_status`).
"""
import copy
import typing

from . import common, decoding
from .common import Row
from .decoding import DecodeError

DEFAULT_PRIORITY = 50

# Field checkers; None marks a field known here but checked by hand below.
_Spec = typing.Mapping[str, decoding.Checker | None]
_JOB_SPEC = {"name": decoding.non_empty_string, "job_type": decoding.non_empty_string,
             "priority": decoding.integer, "project": decoding.string,
             "user": decoding.string, "tasks": None}
_TASK_SPEC = {"name": decoding.non_empty_string, "task_type": decoding.non_empty_string,
              "priority": decoding.integer, "parents": decoding.string_list,
              "commands": None}
_COMMAND_SPEC = {"name": decoding.non_empty_string, "settings": decoding.json_object}


class InvalidJob(ValueError):
    """A submitted job that breaks the format; the message names the field."""


def validate_job(doc: typing.Any) -> Row:
    """Check a submitted job and return it with defaults filled in."""
    try:
        return _validate_job(doc)
    except DecodeError as ex:
        raise InvalidJob(str(ex)) from None


def _validate_job(doc: typing.Any) -> Row:
    decoding.json_object(doc, "job")
    job = known_fields(doc, _JOB_SPEC, ("name", "job_type", "tasks"), "")
    for key in ("project", "user"):
        value = job.setdefault(key, "")
        if value and not common.is_object_id(value):
            raise DecodeError(f"{key}: must be \"\" or a 24-hex id, not {value!r}")
    job.setdefault("priority", DEFAULT_PRIORITY)
    job["tasks"] = validate_tasks(doc["tasks"], _COMMAND_SPEC, {"settings": {}})
    return job


def known_fields(doc: Row, spec: _Spec,
                 required: tuple[str, ...], prefix: str) -> Row:
    """decoding.check_fields, refusing keys that spec does not name; a None
    checker in spec marks a field known but checked by the caller."""
    unknown = sorted(set(doc) - set(spec))
    if unknown:
        raise DecodeError(f"{prefix}{unknown[0]}: unknown field (known: {', '.join(spec)})")
    checks = {name: check for name, check in spec.items() if check is not None}
    return decoding.check_fields(doc, checks, required, prefix)


def validate_tasks(tasks: typing.Any, command_spec: _Spec, command_defaults: Row) -> list[Row]:
    """The ``tasks`` of a job, checked, with defaults filled in (the Flamenco 3 job
    format differs from this one only in its commands' fields: command_spec and
    the defaults of those that may be left out); raises DecodeError."""
    if not isinstance(tasks, list) or not tasks:
        raise DecodeError(f"tasks: expected a non-empty array, got {decoding.describe(tasks)}")
    checked = [_validate_task(task, f"tasks[{index}].", command_spec, command_defaults)
               for index, task in enumerate(tasks)]
    check_dependencies(checked)
    return checked


def _validate_task(doc: typing.Any, prefix: str, command_spec: _Spec, command_defaults: Row) -> Row:
    decoding.json_object(doc, prefix.rstrip("."))
    task = known_fields(doc, _TASK_SPEC, ("name", "task_type", "commands"), prefix)
    task.setdefault("priority", DEFAULT_PRIORITY)
    task.setdefault("parents", [])
    commands = doc["commands"]
    if not isinstance(commands, list):
        raise DecodeError(f"{prefix}commands: expected an array, got {decoding.describe(commands)}")
    task["commands"] = []
    for index, command in enumerate(commands):
        where = f"{prefix}commands[{index}]"
        decoding.json_object(command, where)
        fields = known_fields(command, command_spec, ("name",), where + ".")
        task["commands"].append({"name": fields["name"], **{
            key: fields[key] if key in fields else copy.deepcopy(default)
            for key, default in command_defaults.items()}})
    return task


def check_dependencies(tasks: list[Row]) -> None:
    """Unique names, parents that exist, and no cycles."""
    index_of: dict[str, int] = {}
    for index, task in enumerate(tasks):
        if task["name"] in index_of:
            raise DecodeError(f"tasks[{index}].name: {task['name']!r} is already the name of "
                              f"tasks[{index_of[task['name']]}]")
        index_of[task["name"]] = index
    for index, task in enumerate(tasks):
        for number, parent in enumerate(task["parents"]):
            if parent not in index_of:
                raise DecodeError(f"tasks[{index}].parents[{number}]: no task named {parent!r} "
                                  f"in this job")
    # Depth-first search; a task met again while still on the path closes a cycle.
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = path[path.index(name):] + [name]
            raise DecodeError(f"tasks: dependency cycle {' -> '.join(cycle)}")
        state[name] = "visiting"
        for parent in tasks[index_of[name]]["parents"]:
            visit(parent, path + [name])
        state[name] = "done"

    for task in tasks:
        visit(task["name"], [])


def build_rows(job: Row, created: str) -> tuple[Row, list[Row]]:
    """Store rows for a validated job: ids assigned, parent names turned into ids."""
    job_id = common.new_id()
    job_row = {"id": job_id, "name": job["name"], "job_type": job["job_type"],
               "priority": job["priority"], "project": job["project"], "user": job["user"],
               "created": created}
    task_ids = {task["name"]: common.new_id() for task in job["tasks"]}
    task_rows = [{
        "id": task_ids[task["name"]], "job": job_id, "name": task["name"], "status": "queued",
        "priority": task["priority"], "job_priority": job["priority"],
        "job_type": job["job_type"], "task_type": task["task_type"],
        "project": job["project"], "user": job["user"], "commands": task["commands"],
        "parents": [task_ids[parent] for parent in task["parents"]],
        "worker": "", "last_worker": "", "activity": "", "task_progress_percentage": 0,
        "current_command_idx": 0, "command_progress_percentage": 0,
        "failed_by_workers": [], "metrics": {}, "created": created, "last_ping": "",
    } for task in job["tasks"]]
    return job_row, task_rows


def job_status(task_statuses: typing.Iterable[str]) -> str:
    """A job's status from its tasks' statuses.

    completed when every task is; else failed when any task failed; else
    canceled when any was canceled or is being canceled; else active when any
    task is active or done; else queued.
    """
    statuses = set(task_statuses)
    if statuses == {"completed"}:
        return "completed"
    if "failed" in statuses:
        return "failed"
    if statuses & {"canceled", "cancel-requested"}:
        return "canceled"
    if statuses & {"active", "completed"}:
        return "active"
    return "queued"


def platform_values(variables: dict[str, dict[str, str]], platform: str) -> dict[str, str]:
    """Each variable's value for platform (else its ``all`` value); those with neither
    are left out."""
    values = {name: per_platform.get(platform, per_platform.get("all"))
              for name, per_platform in variables.items()}
    return {name: value for name, value in values.items() if value is not None}


def replace_variables(commands: list[Row], variables: dict[str, dict[str, str]],
                      platform: str) -> list[Row]:
    """Commands with ``{name}`` replaced in top-level string settings.

    variables maps a name to values per platform (``linux``, ``windows``,
    ``darwin``, or ``all`` for every platform).  Unknown placeholders stay.
    """
    values = platform_values(variables, platform)
    if not values:
        return commands

    def replace(text: str) -> str:
        for name, value in values.items():
            text = text.replace("{" + name + "}", value)
        return text

    return [dict(command, settings={key: replace(value) if isinstance(value, str) else value
                                    for key, value in command["settings"].items()})
            for command in commands]
