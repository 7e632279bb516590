"""The Task JSON the Manager hands out, checked before anything runs."""
from __future__ import annotations

import dataclasses
import re
import typing

from fworker.errors import TaskFailed

OBJECT_ID = re.compile(r"^[0-9a-f]{24}$")


class BadTask(TaskFailed):
    """The Manager's Task JSON is malformed.  ``task_id`` is set when the
    task can still be identified (and so be reported failed)."""

    def __init__(self, message: str, task_id: str | None = None):
        super().__init__(message)
        self.task_id = task_id


@dataclasses.dataclass(frozen=True)
class CommandSpec:
    name: str
    settings: dict[str, typing.Any]
    # Flamenco 3: how many steps this command reports itself (0: it counts as
    # one step when it completes).
    total_step_count: int = 0


@dataclasses.dataclass(frozen=True)
class Task:
    id: str
    name: str
    job: str
    task_type: str
    commands: tuple[CommandSpec, ...]
    raw: dict[str, typing.Any] = dataclasses.field(repr=False, compare=False)
    # Flamenco 3 (3.8 and later): the task's total steps; 0 when not given.
    steps_total: int = 0

    @property
    def short_id(self) -> str:
        return self.id[-8:]


def parse_task(body: typing.Any) -> Task:
    if not isinstance(body, dict):
        raise BadTask(f"task is not a JSON object but {type(body).__name__}")
    task_id = body.get("_id")
    if not isinstance(task_id, str) or not OBJECT_ID.match(task_id):
        raise BadTask(f"task has no valid _id: {shown(task_id)}")

    commands = body.get("commands")
    if commands is None:
        commands = []
    if not isinstance(commands, list):
        raise BadTask(f"task {task_id}: field 'commands' must be a list, not {type(commands).__name__}", task_id)
    specs = [command_spec(task_id, index, cmd, "settings") for index, cmd in enumerate(commands)]
    name, job, task_type = (text_field(body, key, task_id, null=True) for key in ("name", "job", "task_type"))
    return Task(task_id, name, job, task_type, tuple(specs), body)


def text_field(body: dict[str, typing.Any], key: str, task_id: str, *, null: bool = False) -> str:
    """The task's string field ``key``, "" when absent (``null``: also when
    JSON null, as 2.x Managers send); BadTask when it is anything else."""
    value = body.get(key, "")
    if value is None and null:
        return ""
    if not isinstance(value, str):
        raise BadTask(f"task {task_id}: field {key!r} must be a string, not {type(value).__name__}", task_id)
    return value


def command_spec(task_id: str, index: int, cmd: typing.Any, settings_key: str) -> CommandSpec:
    """One entry of a task's ``commands``, checked: an object with a name and an
    object of settings under ``settings_key`` (2.x "settings", Flamenco 3 "parameters")."""
    where = f"task {task_id}: commands[{index}]"
    if not isinstance(cmd, dict):
        raise BadTask(f"{where} must be an object, not {type(cmd).__name__}", task_id)
    name = cmd.get("name")
    if not isinstance(name, str) or not name:
        raise BadTask(f"{where} has no command name (got {shown(name)})", task_id)
    settings = cmd.get(settings_key)
    if settings is None:
        settings = {}
    if not isinstance(settings, dict):
        raise BadTask(f"{where} ({name}): {settings_key!r} must be an object, not {type(settings).__name__}", task_id)
    return CommandSpec(name, settings)


def unannounced_type(task: Task, announced: typing.Iterable[str]) -> str | None:
    """Why ``task`` must not run on a worker that announced ``announced``, or
    None when its type is one of them.  A Manager only hands out the types a
    worker announced; anything else is a Manager bug or a hostile answer, and
    the worker may lack the tools such a task needs (issue 15 case 7)."""
    announced = list(announced)
    if task.task_type in announced:
        return None
    named = shown(task.task_type) if task.task_type else "none"
    return (f"task type {named} is not one this worker announced ({' '.join(announced)}); "
            "refusing to run it")


def shown(value: typing.Any, limit: int = 100) -> str:
    """``repr(value)``, cut: a malformed field may be megabytes long."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
