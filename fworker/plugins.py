"""Plug-in commands from other installed packages.

A distribution adds commands through the entry-point group
``fworker.commands``: the entry point's name is the command name, its value
the command class (a subclass of ``fworker.Command`` whose ``name`` is that
same name).  ``load()`` imports and registers them next to the built-in
commands.  A plug-in that cannot be imported, is not a Command subclass, is
named differently from its entry point, or claims a name that is already
taken is left out with a warning naming its distribution and entry point; the
worker starts without it.

The worker must never advertise a task type it cannot serve.  Plug-ins
therefore declare the task types that need their commands in a second group,
``fworker.task_types``: entry-point name = task type, value = the name of the
command (from the same distribution) that tasks of that type use.  This is
read from the installed metadata without importing the plug-in, so it holds
even when the plug-in's code is broken.  A configured task type is not
advertised when any such declaration of it names a command that did not load
(``LoadReport.usable_task_types``).  See docs/API.md.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import sys
import typing

from fworker.commands import base
from fworker.errors import ConfigError, DuplicateCommand

log = logging.getLogger(__name__)

COMMANDS_GROUP = "fworker.commands"
TASK_TYPES_GROUP = "fworker.task_types"


@dataclasses.dataclass(frozen=True)
class Problem:
    """A plug-in entry point that was left out, and why."""

    origin: base.Origin
    message: str

    def __str__(self) -> str:
        return f"plug-in command from {self.origin.describe()} not loaded: {self.message}"


@dataclasses.dataclass(frozen=True)
class Declaration:
    """A distribution's statement that tasks of ``task_type`` need ``command``."""

    task_type: str
    command: str
    distribution: str
    version: str


@dataclasses.dataclass
class LoadReport:
    """What ``load()`` found: the plug-in commands it registered, the ones it
    left out, and the task types that cannot be served because of them."""

    loaded: dict[str, base.Origin] = dataclasses.field(default_factory=dict)
    problems: list[Problem] = dataclasses.field(default_factory=list)
    declarations: list[Declaration] = dataclasses.field(default_factory=list)
    # task type -> why it cannot be served
    unavailable: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def unavailable_task_types(self) -> frozenset[str]:
        return frozenset(self.unavailable)

    def usable_task_types(self, configured: typing.Iterable[str]) -> list[str]:
        """``configured`` without the unavailable task types, in order; a
        warning for each one dropped.  ``ConfigError`` when none is left: a
        worker without a task type would idle forever."""
        configured = list(configured)
        usable = [t for t in configured if t not in self.unavailable]
        for task_type in configured:
            if task_type in self.unavailable:
                log.warning("not advertising task type %r: %s", task_type, self.unavailable[task_type])
        if configured and not usable:
            raise ConfigError("none of the configured task_types can be served: "
                              + "; ".join(f"{t}: {self.unavailable[t]}" for t in configured))
        return usable


def load(*, log_problems: bool = True) -> LoadReport:
    """Register the built-in commands, then every plug-in command that passes
    the checks.  Safe to call again: what is registered stays registered."""
    import fworker.commands  # noqa: F401  (built-ins first: a plug-in cannot take their names)

    report = LoadReport()
    for entry_point in importlib.metadata.entry_points(group=COMMANDS_GROUP):
        problem = _load_one(entry_point, report)
        if problem is not None:
            report.problems.append(problem)
            if log_problems:
                log.warning("%s", problem)
    report.declarations = _declarations()
    report.unavailable = _unavailable(report.declarations)
    return report


def _origin(entry_point: importlib.metadata.EntryPoint) -> base.Origin:
    dist = entry_point.dist
    return base.Origin(
        module=entry_point.module,
        distribution=dist.name if dist is not None else "(unknown distribution)",
        version=dist.version if dist is not None else "?",
        entry_point=f"{entry_point.name} = {entry_point.value}",
    )


def _load_one(entry_point: importlib.metadata.EntryPoint, report: LoadReport) -> Problem | None:
    origin = _origin(entry_point)
    try:
        cls = entry_point.load()
    except Exception as ex:  # third-party code may fail in any way; the worker starts without it
        log.debug("importing plug-in %s failed", origin.describe(), exc_info=True)
        return Problem(origin, f"cannot be imported: {type(ex).__name__}: {ex} (run with -d for the traceback)")
    wrong = _check_class(entry_point.name, cls)
    if wrong:
        return Problem(origin, wrong)
    try:
        base.register(cls, origin=origin)
    except DuplicateCommand:
        dialect = next(d for d in cls.dialects if base.registered(d).get(entry_point.name) not in (None, cls))
        taken = base.origin(entry_point.name, dialect).describe()
        return Problem(origin, f"the command name {entry_point.name!r} is already taken ({taken})")
    except TypeError as ex:  # its dialects are not a tuple of known ones
        return Problem(origin, str(ex))
    report.loaded[entry_point.name] = origin
    return None


def _check_class(name: str, cls: typing.Any) -> str:
    """Why ``cls`` cannot be the command ``name``; empty if it can."""
    if not (isinstance(cls, type) and issubclass(cls, base.Command)):
        what = f"class {cls.__qualname__}" if isinstance(cls, type) else f"a {type(cls).__name__}"
        return f"it is {what}, not a subclass of fworker.Command"
    if cls.name != name:
        return (f"its class {cls.__qualname__} has name = {cls.name!r}, "
                f"but the entry point is named {name!r}; the two must be the same")
    if cls.execute is base.Command.execute:
        return f"its class {cls.__qualname__} does not implement execute()"
    return ""


def _declarations() -> list[Declaration]:
    found = []
    for entry_point in importlib.metadata.entry_points(group=TASK_TYPES_GROUP):
        dist = entry_point.dist
        found.append(Declaration(
            task_type=entry_point.name,
            command=entry_point.value.strip(),
            distribution=dist.name if dist is not None else "(unknown distribution)",
            version=dist.version if dist is not None else "?",
        ))
    return found


def _unavailable(declarations: list[Declaration]) -> dict[str, str]:
    """Task types with a declaration whose command is not registered from the
    declaring distribution (a built-in or another plug-in of that name would
    run the wrong code)."""
    # A declared task type names a command of any dialect the plug-in serves.
    registered = {name: dialect for (dialect, name) in sorted(base.registered(), reverse=True)}
    reasons: dict[str, str] = {}
    for decl in declarations:
        needs = f"it needs command {decl.command!r} from {decl.distribution} {decl.version}"
        if decl.command not in registered:
            reasons.setdefault(decl.task_type, f"{needs}, which did not load")
            continue
        origin = base.origin(decl.command, registered[decl.command])
        if origin.distribution != decl.distribution:
            reasons.setdefault(decl.task_type, f"{needs}, but that name belongs to {origin.describe()}")
    return reasons


def list_commands(out: typing.TextIO | None = None) -> int:
    """``flamenco-worker --list-commands``: every command with its origin,
    the plug-in task types, and the plug-ins left out.  Exit code 0."""
    out = out or sys.stdout
    report = load(log_problems=False)  # printed below instead, once
    rows = sorted(base.registered())
    width = max(len(name) for _, name in rows) + 2
    for dialect in base.DIALECTS:
        names = [name for d, name in rows if d == dialect]
        if names:
            print(f"commands ({dialect}):", file=out)
        for name in names:
            print(f"  {name:<{width}}{base.origin(name, dialect).describe()}", file=out)
    if report.declarations:
        print("task types declared by plug-ins:", file=out)
        for decl in sorted(report.declarations, key=lambda d: (d.task_type, d.distribution)):
            if decl.task_type in report.unavailable:
                state = f"not advertised: {report.unavailable[decl.task_type]}"
            else:
                state = f"needs command {decl.command!r} from {decl.distribution} {decl.version}: available"
            print(f"  {decl.task_type}: {state}", file=out)
    if report.problems:
        print("plug-ins not loaded:", file=out)
        for problem in report.problems:
            print(f"  {problem.origin.describe()}: {problem.message}", file=out)
    return 0
