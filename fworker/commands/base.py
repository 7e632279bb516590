"""The command base class, the registry, and what a running command may use.

A command is a class registered by name.  The runner makes one instance per
command of a task, calls ``validate(settings)`` (which raises
``InvalidSettings`` and never has side effects), then ``execute(settings)``
with the settings ``validate`` returned.  ``execute`` runs in the task runner
greenlet; killing that greenlet (abort, shutdown) raises ``GreenletExit``
inside it, and every child process it started is killed with its tree.

Built-in commands register with the ``register`` decorator, plug-in packages
through entry points (``fworker.plugins``); ``Origin`` records where each
registered command came from.  A command serves the Manager generations named
in its ``dialects`` ("v2" unless it says otherwise), and is looked up by
(dialect, name).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import typing

import gevent

from fworker import childenv, cmdline, config, statefiles, tools
from fworker.commands.checks import (
    QUOTE_LIMIT,
    CommandSettings as CommandSettings,  # re-exported: the type commands use
    SettingChecks,
)
from fworker.errors import CommandFailed, DuplicateCommand, UnknownCommand
from fworker.task import shown

# The Manager generations a command can serve: "v2" (Flamenco 2.x) and "v3"
# (Flamenco 3, api/v3).  Their catalogues differ in names and parameters, so the
# registry is keyed by (dialect, name): "echo" of v2 and "echo" of v3 are two classes.
DIALECTS = ("v2", "v3")

_T = typing.TypeVar("_T")
_Ts = typing.TypeVarTuple("_Ts")

_REGISTRY: dict[tuple[str, str], type[Command]] = {}
_ORIGINS: dict[tuple[str, str], Origin] = {}


@dataclasses.dataclass(frozen=True)
class Origin:
    """Where a registered command comes from: shown by ``--list-commands``
    and named in warnings, so an operator can tell which package to fix."""

    module: str
    distribution: str = ""  # plug-ins only: the installed distribution's name
    version: str = ""
    entry_point: str = ""  # plug-ins only: "name = module:Class"

    @property
    def builtin(self) -> bool:
        return not self.distribution and (self.module == "fworker" or self.module.startswith("fworker."))

    def describe(self) -> str:
        if self.distribution:
            return f"{self.distribution} {self.version} (entry point {self.entry_point})"
        if self.builtin:
            return "built-in"
        return f"registered by {self.module}"


def register(cls: type[Command], *, origin: Origin | None = None) -> type[Command]:
    """Class decorator: make ``cls`` available under ``cls.name`` in each of
    ``cls.dialects``.

    Registering the same class again is harmless (a plug-in module may use
    the decorator and be named by an entry point too); another class under a
    taken (dialect, name) raises ``DuplicateCommand``, and nothing of ``cls``
    is registered then."""
    if not (isinstance(cls, type) and issubclass(cls, Command)):
        raise TypeError(f"{cls!r} is not a subclass of {Command.__module__}.Command")
    if not cls.name:
        raise DuplicateCommand(f"command class {cls.__qualname__} has no name")
    dialects = _dialects_of(cls)
    for dialect in dialects:
        existing = _REGISTRY.get((dialect, cls.name))
        if existing is not None and existing is not cls:
            raise DuplicateCommand(
                f"command name {cls.name!r} is claimed by both "
                f"{existing.__module__}.{existing.__qualname__} and {cls.__module__}.{cls.__qualname__} "
                f"(dialect {dialect})"
            )
    for dialect in dialects:
        key = (dialect, cls.name)
        new = key not in _REGISTRY
        _REGISTRY[key] = cls
        if origin is not None or new:
            _ORIGINS[key] = origin or Origin(cls.__module__)
    return cls


def _dialects_of(cls: type[Command]) -> tuple[str, ...]:
    dialects = cls.dialects
    if isinstance(dialects, str) or not isinstance(dialects, tuple) or not dialects:
        raise TypeError(f"{cls.__qualname__}.dialects must be a non-empty tuple of "
                        f"{' / '.join(DIALECTS)}, not {shown(dialects, QUOTE_LIMIT)}")
    unknown = [d for d in dialects if d not in DIALECTS]
    if unknown:
        raise TypeError(f"{cls.__qualname__}.dialects names unknown dialect(s) {shown(unknown, QUOTE_LIMIT)}; "
                        f"known: {', '.join(DIALECTS)}")
    return dialects


def lookup(name: str, dialect: str = "v2") -> type[Command]:
    try:
        return _REGISTRY[(dialect, name)]
    except (KeyError, TypeError):  # TypeError: an unhashable name from a Manager's JSON
        raise UnknownCommand(f"unknown command {shown(name, QUOTE_LIMIT)}" + ("" if dialect == "v2" else f" ({dialect})")) from None


def registered(dialect: str | None = None) -> dict[typing.Any, type[Command]]:
    """With a ``dialect``: its commands by name.  Without: every command, keyed
    by ``(dialect, name)``."""
    if dialect is None:
        return dict(_REGISTRY)
    return {name: cls for (d, name), cls in _REGISTRY.items() if d == dialect}


def origin(name: str, dialect: str = "v2") -> Origin:
    """Where the command registered as ``name`` in ``dialect`` comes from."""
    lookup(name, dialect)  # the same error for an unknown name
    return _ORIGINS[(dialect, name)]


@typing.runtime_checkable
class Reporter(typing.Protocol):
    """Where a command's output goes: exactly the methods ``CommandContext`` calls.
    The runner's implementation (``fworker.reporter.TaskReporter``) queues updates
    for the Manager; tests may record them.

    Log lines travel one way only, as a batch: one line is a batch of one.  Lines
    handed over together came together (one read of a child's output), so an
    implementation may stamp and buffer them at once."""

    def log_lines(self, lines: list[str], at: float | None = None) -> None:
        """``lines``, in order, for the task log.  ``at``: when they came (wall
        clock, ``time.time()``); None: now."""

    def activity(self, text: str) -> None:
        """The task's activity text."""

    def command_progress(self, percent: int) -> None:
        """The running command's progress, 0 to 100."""

    def output_produced(self, paths: list[str]) -> None:
        """Files the command produced (absolute paths), for the Manager."""

    def timing(self, phase: str, seconds: float) -> None:
        """``seconds`` more spent in ``phase``, for the task's metrics."""

    def steps_completed(self, count: int) -> None:
        """``count`` more steps of the task done (Flamenco 3 shows a task's
        steps; a 2.x Manager never sees them)."""


class CommandContext:
    """The services a command gets: task log, activity, progress, output
    reporting, child processes, the thread pool, and the worker's settings."""

    def __init__(self, reporter: Reporter, logger: logging.Logger, settings: config.Settings | None = None):
        self.reporter = reporter
        self.logger = logger
        # The worker's settings, read-only; without a worker (a command's own
        # tests), every setting at its default.
        self.settings = settings if settings is not None else config.defaults()

    def log(self, line: str, at: float | None = None) -> None:
        """``line`` in the task log, stamped ``at`` (wall clock) or now: a batch of one."""
        self.reporter.log_lines([line], at)

    def log_lines(self, lines: list[str], at: float | None = None) -> None:
        """``lines`` in the task log, in order, as one batch: one call to the reporter,
        one timestamp and one buffer extend for them all."""
        self.reporter.log_lines(lines, at)

    def activity(self, text: str) -> None:
        self.reporter.activity(text)

    def progress(self, percent: float) -> None:
        self.reporter.command_progress(max(0, min(100, int(percent))))

    def output_produced(self, *paths: str) -> None:
        if paths:
            self.reporter.output_produced([os.path.abspath(p) for p in paths])

    def timing(self, phase: str, seconds: float) -> None:
        self.reporter.timing(phase, seconds)

    def step_completed(self, count: int = 1) -> None:
        """``count`` more of this command's steps done.  Only a command whose
        spec has a ``total_step_count`` reports its own steps, never more than
        that; for any other the runner counts one step when it completes."""
        if count > 0:
            self.reporter.steps_completed(count)

    def blocking(self, fn: typing.Callable[[*_Ts], _T], *args: *_Ts) -> _T:
        """Run blocking file-system work in gevent's thread pool, so the
        may-i-run poller and the queue flusher keep running meanwhile."""
        return gevent.get_hub().threadpool.apply(fn, args)

    def sleep(self, seconds: float) -> None:
        gevent.sleep(seconds)

    def run_process(
        self,
        args: list[str],
        *,
        on_line: typing.Callable[[str], None] | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        log_lines: bool = True,
        output_timeout: float | None = None,
    ) -> int:
        """Run ``args`` (no shell) to completion, every output line to the task
        log and to ``on_line``.  A non-zero exit or a signal raises
        ``CommandFailed`` naming it; killing the caller kills the child's tree.
        ``output_timeout`` (default: the ``command_output_timeout`` setting, 0 =
        none): a child silent for that long is stopped and the command fails."""
        from fworker.process import ChildProcess, OutputTimeout, describe_exit  # late: imports psutil

        # Settings other than command lines (a file path...) end up in arguments too.
        problem = cmdline.check_args(args)
        if problem:
            raise CommandFailed(f"cannot run {os.path.basename(args[0])}: its command line {problem}")

        # Lines carry the time they were read: during a backlog they are handled later.
        def handle(lines: list[str]) -> None:
            self.handle_lines(lines, child.read_at, on_line, log_lines=log_lines)

        child = ChildProcess(args, on_lines=handle, cwd=cwd, env=child_environment(env, self.settings),
                             **self._child_options(output_timeout))
        try:
            returncode = child.run()
        except FileNotFoundError:
            raise CommandFailed(f"program not found: {args[0]!r}") from None
        except PermissionError:
            raise CommandFailed(f"program not executable: {args[0]!r}") from None
        except OutputTimeout as ex:
            raise CommandFailed(f"command_output_timeout: {ex}; stopped it") from None
        if returncode != 0:
            raise CommandFailed(f"{os.path.basename(args[0])} failed: {describe_exit(returncode)}")
        return returncode

    def handle_lines(self, lines: list[str], at: float | None,
                     on_line: typing.Callable[[str], None] | None, *, log_lines: bool = True) -> None:
        """What ``run_process`` does with the lines of one read of a child's output,
        read at ``at`` (wall clock).  Without a per-line parser they go to the log in
        one batch: per-line calls were most of the worker's CPU on chatty output
        (exec).  With one, each line is logged before it is parsed, so that the log
        has every line before the activity or progress it caused."""
        if on_line is None:
            if log_lines:
                self.log_lines(lines, at)
            return
        log = self.log_lines if log_lines else None
        for line in lines:
            if log is not None:
                log([line], at)
            on_line(line)

    def _child_options(self, output_timeout: float | None) -> dict[str, typing.Any]:
        """ChildProcess's options that come from the worker's settings."""
        from fworker import leftovers  # late: it imports psutil

        queue_path = self.settings.task_update_queue_db
        return {
            "grace": self.settings.abort_grace_period,
            "logger": self.logger,
            "output_timeout": self.settings.command_output_timeout if output_timeout is None else output_timeout,
            "owner": leftovers.owner_mark(queue_path) if queue_path else None,
            "spool_dir": statefiles.spool_dir(queue_path) if queue_path else None,
        }


def child_environment(extra: dict[str, str] | None = None, settings: config.Settings | None = None) -> dict[str, str]:
    """The worker's environment minus what must not leak into renders, plus
    the instance's ``child_env`` and ``extra`` (fworker.childenv)."""
    settings = settings if settings is not None else config.defaults()
    return childenv.environment(settings.child_environment, settings.secrets(), extra)


class Command(SettingChecks):
    """Base class of every command.  Subclasses set ``name`` and implement
    ``validate`` and ``execute`` (with the helpers of ``SettingChecks``)."""

    # The Manager generations whose catalogue has this command (see DIALECTS).
    dialects: typing.ClassVar[tuple[str, ...]] = ("v2",)
    # The tools (fworker.tools.SPECS: "blender", "ffmpeg") this command runs: a task type
    # whose commands need a tool this worker lacks is not announced, and a command line
    # whose program is such a tool's plain name runs the configured one.
    needs: typing.ClassVar[tuple[str, ...]] = ()

    def __init__(self, ctx: CommandContext):
        self.ctx = ctx

    def validate(self, settings: CommandSettings) -> CommandSettings:
        """Check ``settings`` and return them normalised; raise
        ``InvalidSettings``.  Must not change anything on disk."""
        return dict(settings)

    def execute(self, settings: CommandSettings) -> None:
        raise NotImplementedError

    # More helpers for validate(), those that need the worker (its tools, its thread pool).

    def require_cmdline(self, settings: CommandSettings, key: str, default: str | None = None) -> list[str]:
        """A command line setting, split as ``shlex.split`` does (by
        ``fworker.cmdline``); its program must exist.  A setting too long to
        run, or with a NUL, fails the task naming the setting."""
        if default is None:
            text = self.require_str(settings, key)
        else:
            text = self.optional_str(settings, key, default) or default
        args = self.split_setting(key, text)
        if not args:
            raise self._invalid(key, "must not be empty")
        args[0] = self.require_program(key, args[0])
        return args

    def require_program(self, key: str, program: str) -> str:
        """The program setting ``key`` names, to run: the plain name of a tool
        this command ``needs`` means the worker's tool (``fworker.tools``), and
        it must exist and be executable."""
        if program in self.needs:
            program = tools.resolve_exe(program, self.ctx.settings)
        found = shutil.which(program) if os.sep not in program else (program if os.access(program, os.X_OK) else None)
        if found is None:
            raise self._invalid(key, f"names a program that does not exist or is not executable: {cmdline.shown(program)}")
        return program

    def split_setting(self, key: str, text: str) -> list[str]:
        """Setting ``key``'s ``text`` split into arguments as ``shlex.split``
        does (by ``fworker.cmdline``), in bounded time; too long to run, with a
        NUL, or beyond what the system can exec: ``InvalidSettings`` naming it."""
        if len(text) > cmdline.MAX_TEXT:
            raise self._invalid(key, f"is {len(text)} characters long; a command line may have at most "
                                     f"{cmdline.MAX_TEXT}: {cmdline.shown(text)}")
        if "\0" in text:
            raise self._invalid(key, f"contains a NUL character, which no program can be given: {cmdline.shown(text)}")
        try:
            # A long text goes to gevent's thread pool: one of many tiny arguments
            # takes ~1 µs each to split and check, and the event loop must go on.
            inline = len(text) <= cmdline.INLINE_TEXT
            args = cmdline.split_for_exec(text) if inline else self.ctx.blocking(cmdline.split_for_exec, text)
        except cmdline.ExecLimit as ex:
            raise self._invalid(key, str(ex)) from None
        except ValueError as ex:
            raise self._invalid(key, f"cannot be split into arguments ({ex}): {cmdline.shown(text)}") from None
        return args
