"""Whether a render may use the warm Blender (``fworker.warmblender``), and using it.

A render command builds its Blender command line as always; ``runner_for`` reads that
line the way Blender would.  The launch part (program, ``--factory-startup``,
``--threads``, ``-noaudio``..., the .blend, and what follows ``--``) must equal the warm
Blender's; the task part (``--python-expr`` of plain render flags, ``--render-output``,
``--render-format``, ``--engine``, ``--scene`` naming the active scene (Flamenco 3's stock
job passes it), ``--render-frame``, in their order) becomes the
request.  Anything else (a ``--python`` script such as an overrides file, any other
expression, an unknown option) means a fresh Blender, and the task log says why.

Reuse also needs the same file and the files it reads (linked libraries, images,
caches: what ``bpy.utils.blend_paths`` lists after the load) unchanged in size, mtime
and inode; otherwise the warm Blender is stopped and a new one loads the file.
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import logging
import os
import typing

from fworker import leftovers, warmblender
from fworker.commands.base import CommandContext, child_environment
from fworker.errors import CommandFailed

log = logging.getLogger(__name__)

LAUNCH_FLAGS = {"--factory-startup", "--enable-autoexec", "-y", "--disable-autoexec", "-Y", "-noaudio",
                "--background", "-b"}
LAUNCH_VALUES = {"-t", "--threads", "--python-exit-code"}
TASK_VALUES = {"--python-expr": "flags", "-o": "output", "--render-output": "output", "-F": "format",
               "--render-format": "format", "-f": "frames", "--render-frame": "frames", "-E": "engine",
               "--engine": "engine", "-S": "scene", "--scene": "scene"}
# After '--': Cycles reads these once, when Blender starts.
PYTHON_ARGS = {"--cycles-device": 1, "--cycles-print-stats": 0}
RENDER_FLAGS = ("use_file_extension", "use_overwrite", "use_placeholder")
# One step of the request, in command-line order: ("flags", {flag: bool}) or (what, value).
Op = tuple[str, str | dict[str, bool]]


@dataclasses.dataclass(frozen=True)
class Plan:
    key: warmblender.Key
    launch: list[str]
    ops: list[Op]


def analyse(args: list[str]) -> Plan | str:
    """The warm plan for a Blender command line, or why it needs a fresh Blender."""
    launch, blend, tail = [args[0]], None, []
    ops: list[Op] = []
    i = 1
    while i < len(args):
        arg = args[i]
        if arg == "--":
            tail = args[i:]
            problem = _check_python_args(tail[1:])
            if problem:
                return problem
            break
        if arg in LAUNCH_FLAGS:
            launch.append(arg)
        elif arg in LAUNCH_VALUES or arg in TASK_VALUES:
            if i + 1 >= len(args):
                return f"option {arg} has no value"
            value = args[i + 1]
            i += 1
            if arg in LAUNCH_VALUES:
                launch += [arg, value]
            elif blend is None:
                return f"option {arg} comes before the .blend file"
            elif TASK_VALUES[arg] == "flags":
                flags = render_flags(value)
                if flags is None:
                    return "--python-expr runs a script other than plain render settings"
                ops.append(("flags", flags))
            else:
                ops.append((TASK_VALUES[arg], value))
        elif not arg.startswith("-") and blend is None:
            blend = arg
            launch.append(arg)
        else:
            return f"option {arg!r} is not one the kept-loaded Blender understands"
        i += 1
    if blend is None:
        return "no .blend file on the command line"
    argv = tuple(a for a in launch if a != blend) + tuple(tail)
    key = warmblender.Key(argv, os.path.abspath(blend))
    return Plan(key, [*launch, "--python", warmblender.CONTROL_SCRIPT, *tail], ops)


def _check_python_args(args: list[str]) -> str:
    i = 0
    while i < len(args):
        if args[i] not in PYTHON_ARGS:
            return f"argument {args[i]!r} after '--' is not one the kept-loaded Blender understands"
        i += 1 + PYTHON_ARGS[args[i]]
    return ""


def render_flags(expr: str) -> dict[str, bool] | None:
    """The render flags a ``--python-expr`` sets (Flamenco 3.9's stock expression sets
    ``use_file_extension``, ``use_overwrite``, ``use_placeholder``), or None when it does
    anything else: only ``import bpy``, names for ``bpy.context.scene(.render)`` and
    assignments of True/False to those flags."""
    try:
        tree = ast.parse(expr)
    except SyntaxError:
        return None
    names: dict[str, str] = {}
    flags: dict[str, bool] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Import) and [a.name for a in stmt.names] == ["bpy"]:
            names[stmt.names[0].asname or "bpy"] = "bpy"
        elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target, value = stmt.targets[0], stmt.value
            if isinstance(target, ast.Name) and _path(value, names) in ("context", "scene", "render"):
                names[target.id] = _path(value, names)
            elif (isinstance(target, ast.Attribute) and target.attr in RENDER_FLAGS
                  and _path(target.value, names) == "render"
                  and isinstance(value, ast.Constant) and isinstance(value.value, bool)):
                flags[target.attr] = value.value
            else:
                return None
        else:
            return None
    return flags


def _path(node: ast.AST, names: dict[str, str]) -> str:
    steps = {("bpy", "context"): "context", ("context", "scene"): "scene", ("scene", "render"): "render"}
    if isinstance(node, ast.Name):
        return names.get(node.id, "")
    if isinstance(node, ast.Attribute):
        return steps.get((_path(node.value, names), node.attr), "")
    return ""


def fingerprint(paths: list[str]) -> tuple[warmblender.FileStamp, ...]:
    """Size, mtime and inode of each file (None when missing): its change is a new file."""
    found: list[warmblender.FileStamp] = []
    for path in paths:
        try:
            st = os.stat(path)
            found.append((path, st.st_size, st.st_mtime_ns, st.st_ino))
        except OSError:
            found.append((path, None))
    return tuple(found)


def runner_for(ctx: CommandContext, args: list[str]) -> typing.Callable[..., int] | None:
    """A replacement for ``ctx.run_process`` that renders in the warm Blender, or None
    (a fresh Blender: the task log says why)."""
    if not ctx.settings.warm_blender:
        return None
    plan = analyse(args)
    if isinstance(plan, str):
        ctx.log(f"worker: a fresh Blender for this task: {plan}")
        ctx.logger.info("fresh Blender: %s", plan)
        return None
    return functools.partial(_render, ctx, plan)


def _limits(ctx: CommandContext) -> warmblender.Limits:
    s = ctx.settings
    return warmblender.Limits(s.warm_blender_max_tasks, s.warm_blender_max_memory_mb,
                              s.warm_blender_idle_timeout, s.abort_grace_period)


def _render(ctx: CommandContext, plan: Plan, args: list[str], *,
            on_line: typing.Callable[[str], None]) -> int:
    def sink(lines: list[str]) -> None:
        for line in lines:  # each line logged before it is parsed, as for a fresh Blender
            ctx.log_lines([line])
            on_line(line)

    timeout = ctx.settings.command_output_timeout
    warm = _warm_for(ctx, plan, sink, timeout)
    try:
        reply = warm.render({"ops": plan.ops}, sink, timeout)
    except warmblender.OutputSilence as ex:
        raise CommandFailed(f"command_output_timeout: {ex}; stopped it") from None
    except warmblender.WarmFailed as ex:
        raise CommandFailed(f"{os.path.basename(args[0])} failed: {ex}") from None
    warm.after_task()
    if reply["kind"] == "declined":
        ctx.log(f"worker: a fresh Blender for this task: the kept-loaded one cannot do it exactly "
                f"({reply.get('why')})")
        return ctx.run_process(args, on_line=on_line)
    if reply.get("status"):
        raise CommandFailed(f"{os.path.basename(args[0])} failed: exit code {reply['status']}")
    return 0


def _warm_for(ctx: CommandContext, plan: Plan, sink: warmblender.LineSink,
              timeout: float) -> warmblender.WarmBlender:
    warm = warmblender.current()
    if warm is not None and warm.key != plan.key:
        warm.stop("a task of another file or Blender command line")
        warm = None
    if warm is not None:
        changed = ctx.blocking(_changed, warm)
        if changed:
            ctx.log(f"worker: {changed} since the warm Blender loaded it: loading it afresh")
            warm.stop(f"{changed}")
            warm = None
    if warm is not None:
        ctx.log(f"worker: scene already loaded: {plan.key.filepath} stays loaded in Blender pid "
                f"{warm.pid} (its task {warm.tasks + 1}); not reading it again")
        return warm
    queue_path = ctx.settings.task_update_queue_db
    warm = warmblender.WarmBlender(plan.key, plan.launch, _limits(ctx),
                                   env=child_environment(settings=ctx.settings),
                                   owner=leftovers.owner_mark(queue_path) if queue_path else None,
                                   logger=ctx.logger)
    before = ctx.blocking(fingerprint, [plan.key.filepath])  # a change during the load counts
    try:
        warm.start(sink, timeout)
    except warmblender.OutputSilence as ex:
        raise CommandFailed(f"command_output_timeout: {ex}; stopped it") from None
    except warmblender.WarmFailed as ex:
        raise CommandFailed(f"{os.path.basename(plan.launch[0])} failed: {ex}") from None
    warm.fingerprint = before + ctx.blocking(fingerprint, warm.dependencies)
    return warm


def _changed(warm: warmblender.WarmBlender) -> str:
    """What changed of the file or what it reads, or ''."""
    paths = [entry[0] for entry in warm.fingerprint]
    now = fingerprint(paths)
    for old, new in zip(warm.fingerprint, now, strict=True):  # one stamp a path, in order
        if old != new:
            what = "the file" if old[0] == warm.key.filepath else f"{old[0]}, which it reads,"
            return f"{what} changed"
    return ""
