"""The programs the worker runs for render and encode tasks (Blender, FFmpeg):
found at start-up, their versions asked, and the task types that need a
missing one left out of what the worker announces.

Each tool is looked for where its setting (``blender_exe``, ``ffmpeg_exe``)
says, a path or a program name on PATH; an empty setting means its plain name
on PATH.  A configured tool that cannot be used is reported as such and never
replaced by another one from PATH: a studio that pins a Blender version must
not get renders from a different one.  Found means: an executable file that
answered its version question (``blender --version``, ``ffmpeg -version``)
with exit code 0 and a version line, within ``VERSION_TIMEOUT``.  The question
runs as a child process through ``fworker.process`` (argument list, own
session, tree stopped on timeout), so the event loop is never blocked.

A command whose program is the plain name of a tool it declares
(``Command.needs``) runs the configured one: ``resolve_exe``.

Which tools a task type needs follows from the commands its tasks carry
(``TASK_TYPE_COMMANDS``, and the task types plug-ins declare) and what those
command classes declare in ``needs``; ``TASK_TYPE_TOOLS`` covers task types
whose commands this worker does not have yet.  ``capabilities()`` puts it
together: the task types that can run, and why the others cannot.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import typing

import gevent

from fworker import childenv, config

log = logging.getLogger(__name__)

# Blender's --version takes ~0.3-1 s; a busy machine may need many times that.
VERSION_TIMEOUT = 20.0
_MAX_LINES = 200  # of a version answer kept: the version is in the first few


@dataclasses.dataclass(frozen=True)
class ToolSpec:
    name: str  # the plain program name, as commands write it
    label: str  # as people write it
    setting: str  # the setting naming where it is
    version_args: tuple[str, ...]
    version_pattern: re.Pattern[str]


SPECS: dict[str, ToolSpec] = {
    "blender": ToolSpec("blender", "Blender", "blender_exe", ("--version",),
                        re.compile(r"\bBlender (\d+\.\d+(?:\.\d+)?)")),
    "ffmpeg": ToolSpec("ffmpeg", "FFmpeg", "ffmpeg_exe", ("-version",),
                       re.compile(r"\bffmpeg version (\S+)")),
}

# The commands that tasks of each type carry, as the Managers' job types write them.  A
# task type needs every tool that one of its commands needs (Command.needs).
TASK_TYPE_COMMANDS: dict[str, tuple[tuple[str, str], ...]] = {
    # Flamenco 2.x
    "blender-render": tuple(("v2", name) for name in ("blender_render", "blender_render_progressive",
                                                      "blender_render_audio", "exr_sequence_to_jpeg")),
    "test-blender-render": (("v2", "blender_render"),),
    "exr-merge": tuple(("v2", name) for name in ("merge_progressive_renders", "merge_progressive_render_sequence",
                                                 "exr_sequence_to_jpeg")),
    "video-encoding": tuple(("v2", name) for name in ("create_video", "concatenate_videos", "mux_audio",
                                                      "encode_audio")),
    # Flamenco 3
    "blender": (("v3", "blender-render"),),
    "ffmpeg": (("v3", "frames-to-video"),),
}
# Tools a task type needs whatever commands are registered: Flamenco 3's stock job types
# render with Blender in "blender" tasks and encode with FFmpeg in "ffmpeg" tasks.
TASK_TYPE_TOOLS: dict[str, tuple[str, ...]] = {"blender": ("blender",), "ffmpeg": ("ffmpeg",)}


@dataclasses.dataclass(frozen=True)
class Tool:
    """One tool as found: ``path`` and ``version`` when usable, else ``problem``."""

    name: str
    path: str | None = None
    version: str = ""
    problem: str = ""
    origin: str = ""  # "PATH", or the setting that named it

    @property
    def usable(self) -> bool:
        return not self.problem and self.path is not None

    @property
    def label(self) -> str:
        return SPECS[self.name].label

    def describe(self) -> str:
        if self.usable:
            return f"{self.path} ({self.label} {self.version}, from {self.origin})"
        return f"not usable: {self.problem}"


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """What this worker can run: the task types to announce, in the configured
    order, the ones left out and why, and the tools as found (only those some
    configured task type needs are looked for)."""

    announced: tuple[str, ...]
    dropped: typing.Mapping[str, str]
    tools: typing.Mapping[str, Tool]

    def rows(self) -> list[tuple[str, str]]:
        """(name, text) rows for the start-up banner and ``--check-config``."""
        rows = [(name, self.tools[name].describe() if name in self.tools else "not looked for (no task type needs it)")
                for name in SPECS]
        rows += [("not announced", f"{task_type}: {why}") for task_type, why in self.dropped.items()]
        return rows


def resolve_exe(exe: str, settings: config.Settings) -> str:
    """The program to run for ``exe``: a tool's plain name (``blender``,
    ``ffmpeg``) means the tool as configured; anything else stays as it is."""
    spec = SPECS.get(exe)
    if spec is None:
        return exe
    configured = getattr(settings, spec.setting)  # a name from SPECS, not a default
    return os.path.expanduser(configured) if configured else exe


def locate(name: str, configured: str) -> tuple[str | None, str, str]:
    """(path, origin, problem) of tool ``name``, by its setting's value
    ``configured`` (a path, or a program name on PATH) or by its plain name."""
    spec = SPECS[name]
    if not configured:
        path = shutil.which(name)
        if path is None:
            return None, "PATH", f"no executable {name!r} on PATH (set {spec.setting} to its location)"
        return os.path.abspath(path), "PATH", ""
    origin = spec.setting
    wanted = os.path.expanduser(configured)
    if os.sep not in wanted and not (os.altsep and os.altsep in wanted):
        path = shutil.which(wanted)
        if path is None:
            return None, origin, f"{spec.setting} = {configured!r}: no such executable on PATH"
        return os.path.abspath(path), origin, ""
    if not os.path.exists(wanted):
        return None, origin, f"{spec.setting} = {configured!r}: no such file"
    if not os.path.isfile(wanted):
        return None, origin, f"{spec.setting} = {configured!r}: not a file"
    if not os.access(wanted, os.X_OK):
        return None, origin, f"{spec.setting} = {configured!r}: not executable"
    return os.path.abspath(wanted), origin, ""


# Answers already had, by file identity: an unchanged file answers the same, and a
# process that builds many workers (tests, the API) asks each tool once.
_ANSWERS: dict[tuple[typing.Any, ...], tuple[str, str]] = {}


def find_tool(name: str, configured: str = "", timeout: float = VERSION_TIMEOUT) -> Tool:
    """Tool ``name`` located (see ``locate``) and asked its version."""
    path, origin, problem = locate(name, configured)
    if path is None:
        return Tool(name, problem=problem, origin=origin)
    try:
        stat = os.stat(path)
    except OSError as ex:
        return Tool(name, path=path, origin=origin, problem=f"{path}: {ex.strerror}")
    key = (name, os.path.realpath(path), stat.st_ino, stat.st_mtime_ns, stat.st_size)
    if key not in _ANSWERS:
        _ANSWERS[key] = ask_version(SPECS[name], path, timeout)
    version, problem = _ANSWERS[key]
    return Tool(name, path=path, version=version, problem=problem, origin=origin)


def ask_version(spec: ToolSpec, path: str, timeout: float) -> tuple[str, str]:
    """(version, problem) from running ``path`` with the spec's version arguments."""
    from fworker.process import ChildProcess, describe_exit  # late: imports psutil

    lines: list[str] = []

    def keep(batch: list[str]) -> None:
        lines.extend(batch[:_MAX_LINES - len(lines)])

    asked = f"{path} {' '.join(spec.version_args)}"
    # As commands run their children (fworker.childenv): without the worker's
    # LD_LIBRARY_PATH and own variables.  The answers are cached per program,
    # so no instance's child_env goes in.
    env = childenv.environment()
    child = ChildProcess([path, *spec.version_args], on_lines=keep, env=env, grace=1.0, logger=log)
    timer = gevent.Timeout(timeout)
    timer.start()
    try:
        returncode = child.run()
    except gevent.Timeout as ex:
        if ex is not timer:
            raise
        return "", f"`{asked}` did not answer within {timeout:g} s; stopped it"
    except OSError as ex:  # not found meanwhile, not executable, not a program (ENOEXEC)
        return "", f"`{asked}` cannot be run: {ex.strerror or ex}"
    finally:
        timer.close()
    last = next((line.strip() for line in reversed(lines) if line.strip()), "")
    if returncode != 0:
        return "", f"`{asked}` failed: {describe_exit(returncode)}" + (f": {last}" if last else "")
    for line in lines:
        found = spec.version_pattern.search(line)
        if found:
            return found.group(1), ""
    first = next((line.strip() for line in lines if line.strip()), "")
    return "", f"`{asked}` printed no {spec.label} version" + (f" (first line: {first[:200]!r})" if first else "")


def find_tools(settings: config.Settings, names: typing.Iterable[str] = tuple(SPECS),
               timeout: float = VERSION_TIMEOUT) -> dict[str, Tool]:
    """The tools ``names``, asked at the same time, by name."""
    names = [name for name in SPECS if name in set(names)]
    jobs = {name: gevent.spawn(find_tool, name, getattr(settings, SPECS[name].setting), timeout)
            for name in names}
    try:
        gevent.joinall(list(jobs.values()), raise_error=True)
    finally:
        gevent.killall(list(jobs.values()))  # only when interrupted: a killed caller kills the children
    return {name: typing.cast(Tool, job.value) for name, job in jobs.items()}  # all ended: joinall raised otherwise


def task_type_needs(task_type: str, commands: typing.Mapping[tuple[str, str], type],
                    declared: typing.Iterable[tuple[str, str]] = ()) -> tuple[str, ...]:
    """The tools tasks of ``task_type`` need: ``TASK_TYPE_TOOLS``, and the
    ``needs`` of every registered command its tasks carry (``TASK_TYPE_COMMANDS``
    and ``declared``, (task type, command) pairs from plug-ins, of any dialect).
    ``commands``: the registry, keyed by (dialect, name)."""
    names = list(TASK_TYPE_COMMANDS.get(task_type, ()))
    names += [(dialect, command) for declared_type, command in declared if declared_type == task_type
              for dialect in base_dialects(commands)]
    needed = set(TASK_TYPE_TOOLS.get(task_type, ()))
    for name in names:
        cls = commands.get(name)
        if cls is not None:
            needed.update(cls.needs)  # type: ignore[attr-defined]  # a Command subclass: tools sits below commands
    return tuple(name for name in SPECS if name in needed) + tuple(sorted(needed - set(SPECS)))


def base_dialects(commands: typing.Mapping[tuple[str, str], type]) -> list[str]:
    return sorted({dialect for dialect, _ in commands})


def capabilities(settings: config.Settings, task_types: typing.Iterable[str],
                 commands: typing.Mapping[tuple[str, str], type],
                 declared: typing.Iterable[tuple[str, str]] = (), timeout: float = VERSION_TIMEOUT) -> Capabilities:
    """Which of ``task_types`` this worker can run with the tools it finds
    (asking only those some task type needs); a warning for each one left out."""
    declared = list(declared)
    task_types = list(task_types)
    needs = {task_type: task_type_needs(task_type, commands, declared) for task_type in task_types}
    wanted = {tool for tools in needs.values() for tool in tools if tool in SPECS}
    found = find_tools(settings, wanted, timeout)
    announced, dropped = [], {}
    for task_type in task_types:
        why = [_why(tool, found.get(tool)) for tool in needs[task_type]]
        why = [reason for reason in why if reason]
        if why:
            dropped[task_type] = "; ".join(why)
            log.warning("not announcing task type %r: %s", task_type, dropped[task_type])
        else:
            announced.append(task_type)
    return Capabilities(tuple(announced), dropped, found)


def _why(tool: str, found: Tool | None) -> str:
    if found is None:
        return f"it needs {tool!r}, a tool this worker does not know how to find"
    if found.usable:
        return ""
    return f"it needs {found.label}, which is not usable: {found.problem}"
