"""Jobs for the Flamenco 3 development Manager: the submission format, its rows,
and builders for the commands a Flamenco 3 worker runs.

A job, as ``DevManager3.submit_job(dict)`` or ``POST /dev/jobs`` takes it::

    {"name": "demo", "job_type": "simple-blender-render", "priority": 50,
     "tasks": [{"name": "hello", "task_type": "misc", "priority": 50, "parents": [],
                "commands": [{"name": "echo", "parameters": {"message": "hi"},
                              "total_step_count": 0}]}]}

``priority`` defaults to 50, ``parents`` (names of tasks of the job) to [],
``parameters`` to {} and ``total_step_count`` to 0.  Unknown keys are refused
and every error names the field.  A task's ``steps_total`` is the sum over its
commands of ``max(1, total_step_count)``: a command without steps of its own
counts as one, as the real Manager counts.

The builders (``echo``, ``sleep``, ``exec_command``, ``blender_render``,
``frames_to_video``, ``move_directory``, ``copy_file``, ``make_directory``) use
Flamenco 3's command and parameter names; ``task`` and ``job`` wrap them.
"""
import typing
import uuid

from .. import decoding, jobs as jobs2
from ..common import Row
from ..decoding import DecodeError
from ..jobs import InvalidJob

DEFAULT_PRIORITY = jobs2.DEFAULT_PRIORITY

_JOB_SPEC = {"name": decoding.non_empty_string, "job_type": decoding.non_empty_string,
             "priority": decoding.integer, "tasks": None}
_COMMAND_SPEC = {"name": decoding.non_empty_string, "parameters": decoding.json_object,
                 "total_step_count": decoding.integer_in(0, 2**31 - 1)}


def validate_job(doc: typing.Any) -> Row:
    """Check a submitted job and return it with defaults filled in; InvalidJob else."""
    try:
        decoding.json_object(doc, "job")
        job = jobs2.known_fields(doc, _JOB_SPEC, ("name", "job_type", "tasks"), "")
        job.setdefault("priority", DEFAULT_PRIORITY)
        job["tasks"] = jobs2.validate_tasks(doc["tasks"], _COMMAND_SPEC,
                                            {"parameters": {}, "total_step_count": 0})
    except DecodeError as ex:
        raise InvalidJob(str(ex)) from None
    return job


def build_rows(job: Row, created: str) -> tuple[Row, list[Row]]:
    """Store rows for a validated job: UUIDs assigned, parent names turned into ids."""
    job_id = str(uuid.uuid4())
    job_row = {"id": job_id, "name": job["name"], "job_type": job["job_type"],
               "priority": job["priority"], "created": created}
    ids = {item["name"]: str(uuid.uuid4()) for item in job["tasks"]}
    task_rows = [{
        "id": ids[item["name"]], "job": job_id, "name": item["name"], "status": "queued",
        "priority": item["priority"], "job_priority": job["priority"],
        "job_type": job["job_type"], "task_type": item["task_type"],
        "commands": item["commands"], "parents": [ids[parent] for parent in item["parents"]],
        "worker": "", "activity": "", "steps_completed": 0,
        "steps_total": sum(max(1, command["total_step_count"]) for command in item["commands"]),
        "failed_by_workers": [], "created": created, "last_touched": "",
    } for item in job["tasks"]]
    return job_row, task_rows


def replace_variables(commands: list[Row], variables: dict[str, dict[str, str]],
                      platform: str) -> list[Row]:
    """Commands with ``{name}`` replaced in string parameters and in the strings of
    list parameters, by the value for the worker's platform (or ``all``)."""
    values = jobs2.platform_values(variables, platform)
    if not values:
        return commands

    def replace(value: typing.Any) -> typing.Any:
        if isinstance(value, str):
            for name, text in values.items():
                value = value.replace("{" + name + "}", text)
        elif isinstance(value, list):
            value = [replace(item) for item in value]
        return value

    return [dict(command, parameters={key: replace(value)
                                      for key, value in command["parameters"].items()})
            for command in commands]


# Builders

def command(name: str, total_step_count: int = 0, **parameters: typing.Any) -> Row:
    return {"name": name, "parameters": parameters, "total_step_count": total_step_count}


def echo(message: str) -> Row:
    return command("echo", message=message)


def sleep(duration_in_seconds: float) -> Row:
    return command("sleep", duration_in_seconds=duration_in_seconds)


def exec_command(exe: str, args: typing.Sequence[str] = ()) -> Row:
    return command("exec", exe=exe, args=list(args))


def blender_render(blendfile: str, args: typing.Sequence[str] = (), exe: str = "blender",
                   exe_args: str = "", args_before: typing.Sequence[str] = (),
                   total_step_count: int = 0) -> Row:
    return command("blender-render", total_step_count, exe=exe, exeArgs=exe_args,
                   argsBefore=list(args_before), blendfile=blendfile, args=list(args))


def frames_to_video(input_glob: str, output_file: str, fps: float, exe: str = "ffmpeg",
                    exe_args: str = "", args_before: typing.Sequence[str] = (),
                    args: typing.Sequence[str] = ()) -> Row:
    return command("frames-to-video", exe=exe, exeArgs=exe_args, fps=fps,
                   inputGlob=input_glob, outputFile=output_file,
                   argsBefore=list(args_before), args=list(args))


def move_directory(src: str, dest: str) -> Row:
    return command("move-directory", src=src, dest=dest)


def copy_file(src: str, dest: str) -> Row:
    return command("copy-file", src=src, dest=dest)


def make_directory(path: str) -> Row:
    return command("make-directory", path=path)


def task(name: str, commands: typing.Sequence[Row], task_type: str = "misc",
         priority: int = DEFAULT_PRIORITY, parents: typing.Sequence[str] = ()) -> Row:
    return {"name": name, "task_type": task_type, "priority": priority,
            "parents": list(parents), "commands": list(commands)}


def job(name: str, tasks: typing.Sequence[Row], job_type: str = "dev",
        priority: int = DEFAULT_PRIORITY) -> Row:
    return {"name": name, "job_type": job_type, "priority": priority, "tasks": list(tasks)}
