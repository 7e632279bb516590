"""Settings: declared once, in SETTINGS, and used for parsing, validation,
the typed ``Settings`` value, ``--help``, ``--check-config`` and the sample
``etc/flamenco-worker.cfg``.

Files are read in this order, each overriding the one before: the defaults
below, ``flamenco-worker.cfg`` in the current directory,
``~/.flamenco-worker.cfg``, then the file given with ``-c``.  A missing file
is skipped.  Everything lives in section ``[flamenco-worker]`` (one file read:
``fworker.configfile``).

A named instance (``--instance gpu0``, see ``fworker.instance``) also reads
its own file ``~/.flamenco-worker@gpu0.cfg`` (where it keeps its credentials)
before the ``-c`` file, and in every file section ``[flamenco-worker@gpu0]``
overrides ``[flamenco-worker]``.  Its credentials (worker_id, worker_secret)
come only from its own file or section, never from the shared one.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import socket
import textwrap
import types
import typing

from fworker import childenv, configfile, safetext, statefiles
from fworker.blenderargs import BlenderArgs

# The file format's names, re-exported (redundant aliases): callers name them with the settings'.
from fworker.configfile import (
    PRE_TASK_SECTION as PRE_TASK_SECTION,
    SECTION as SECTION,
    instance_section as instance_section,
    parse_pre_task_checks as parse_pre_task_checks,
)
from fworker.errors import ConfigError
from fworker.settingvalues import Setting, convert

MANAGER_PROTOCOLS = ("auto", "v2", "v3")
DEFAULT_TASK_TYPES = "sleep blender-render file-management exr-merge video-encoding debug"


def _s(name: str, type_: str, default: typing.Any, help_: str, unit: str = "", secret: bool = False,
       minimum: float | None = None, maximum: float | None = None) -> Setting:
    return Setting(name, type_, default, textwrap.dedent(help_).strip(), unit, secret, minimum, maximum)


SETTINGS: tuple[Setting, ...] = (
    _s("manager_url", "url", "", "URL of the Flamenco Manager, e.g. http://manager:8080/. "
       "Empty: find the Manager on the local network with UPnP/SSDP."),
    _s("manager_protocol", "str", "auto", "Which Manager generation to speak: auto (ask the Manager: "
       "one answering GET /api/v3/version is Flamenco 3), v2 (Flamenco Manager 2.x) or v3 (Flamenco 3)."),
    _s("restart_exit_code", "int", 0, "Flamenco 3: when the Manager asks this worker to restart, sign off "
       "and exit with this code, for a service manager to start it again. 0: not configured (the "
       "Manager is told this worker cannot restart).", "", minimum=0, maximum=255),
    _s("discovery_timeout", "float", 5.0, "With no manager_url: how long to wait for a Manager to answer "
       "the UPnP/SSDP search.", "seconds", minimum=0.1),
    _s("task_types", "list", DEFAULT_TASK_TYPES, "Task types this worker runs, separated by spaces. "
       "The legacy name job_types is accepted too."),
    _s("blender_exe", "str", "", "The Blender this worker renders with: a path, or a program name looked up "
       "on PATH. Empty: blender on PATH. A command whose program is plain blender runs this one. Task types "
       "that need Blender are not announced when it is missing or does not answer --version."),
    _s("ffmpeg_exe", "str", "", "The FFmpeg this worker encodes and converts previews with: a path, or a "
       "program name looked up on PATH. Empty: ffmpeg on PATH. A command whose program is plain ffmpeg runs "
       "this one. Task types that need FFmpeg are not announced when it is missing or does not answer -version."),
    _s("blender_threads", "int", 0, "Render with this many threads (--threads N, before the frame "
       "arguments). 0: Blender's default (all cores).", "threads", minimum=0, maximum=1024),
    _s("blender_cycles_device", "str", "", "Cycles device for renders (--cycles-device DEVICE, after '--'): "
       "CPU, CUDA, OPTIX, HIP, ONEAPI, METAL, or e.g. CUDA+CPU. Empty: what the .blend file says."),
    _s("blender_args_before", "str", "", "More Blender arguments for every render, put before the frame "
       "arguments (split as a shell would, never run through one)."),
    _s("blender_args_after", "str", "", "More arguments for every render, put after '--' (read by Python "
       "scripts and Cycles)."),
    _s("child_env", "str", "", "Environment variables added to every process the worker starts, as "
       "NAME=value pairs separated by spaces (quote a value with spaces), e.g. "
       "'CUDA_VISIBLE_DEVICES=0 OMP_NUM_THREADS=8'. The worker's own FWORKER_*/FLAMENCO_WORKER_* "
       "variables and anything holding its secrets are never passed on."),
    _s("nickname", "str", "", "Name shown in the Manager's dashboard. Empty: this machine's host name."),
    _s("worker_id", "str", "", "Set by the worker after registration; leave empty to register anew."),
    _s("worker_secret", "str", "", "Set by the worker after registration. Keep this file private.",
       secret=True),
    _s("worker_registration_secret", "str", "", "Pre-shared key, when the Manager requires one to "
       "register new workers (sent as a signed, short-lived token, never as such).", secret=True),
    _s("task_update_queue_db", "str", "flamenco-worker.db", "SQLite file of the durable queue of task "
       "updates. Relative paths are relative to the current directory. Output a command prints faster "
       "than the worker handles it waits in an unlinked file in the same folder (256 MiB at most)."),
    _s("http_timeout", "float", 30.0, "Give up on one HTTP request to the Manager after this long.",
       "seconds", minimum=0.1),
    _s("fetch_task_interval", "float", 2.0, "Wait this long before asking again when the Manager has "
       "no task for this worker (jittered; keep well under a minute, or the Manager marks the worker "
       "timed out).", "seconds", minimum=0.0),
    _s("backoff_initial", "float", 1.0, "First wait after the Manager could not be reached; doubles on "
       "every failure.", "seconds", minimum=0.01),
    _s("backoff_max", "float", 15.0, "Longest wait between attempts to reach the Manager; at most 30 "
       "(the Manager takes a worker silent for a minute as gone).", "seconds", minimum=0.01,
       maximum=30.0),
    _s("may_i_run_interval", "float", 5.0, "How often a running task asks the Manager whether it may "
       "keep running.", "seconds", minimum=0.1),
    _s("push_log_max_interval", "float", 1.0, "Send buffered task log lines at least this often.",
       "seconds", minimum=0.0),
    _s("push_log_max_lines", "int", 1000, "Send buffered task log lines once this many have gathered.",
       "lines", minimum=1),
    _s("push_act_max_interval", "float", 1.0, "Send activity and progress updates at most this often.",
       "seconds", minimum=0.0),
    _s("activity_interval", "float", 2.0, "Rate of activity updates parsed from Blender and FFmpeg "
       "output.", "seconds", minimum=0.0),
    _s("output_produced_interval", "float", 5.0, "At most one report of produced images per interval.",
       "seconds", minimum=0.0),
    _s("abort_grace_period", "float", 10.0, "After asking a command's processes to stop (SIGTERM), "
       "wait this long before killing them (SIGKILL).", "seconds", minimum=0.0),
    _s("shutdown_flush_timeout", "float", 15.0, "At shutdown, try this long to send queued updates "
       "before signing off; what is left stays queued for the next start.", "seconds", minimum=0.0),
    _s("pre_task_check_interval", "float", 60.0, "After a failed pre-task check (section "
       "[pre_task_check], read.NAME / write.NAME = path), check again after this long.",
       "seconds", minimum=0.01),
    _s("log_file", "str", "", "Write the worker's own log to this file instead of stderr. Reopened on "
       "SIGHUP, so logrotate can move it away. Empty: log to stderr."),
    _s("log_max_bytes", "int", 10485760, "Rotate log_file when it grows past this size, keeping "
       "log_backup_count old files. 0: never rotate here (leave it to logrotate).", "bytes", minimum=0),
    _s("log_backup_count", "int", 5, "How many rotated log files (log_file.1, .2, ...) to keep.",
       "files", minimum=0),
    _s("task_log_folder", "str", "", "Also keep each task's log locally, as task-<task id>.txt in this "
       "folder (created private to this user). Empty: off."),
    _s("task_log_keep", "int", 100, "Keep at most this many task log files in task_log_folder; the "
       "oldest are deleted first.", "files", minimum=1),
    _s("metrics_port", "int", 0, "Serve /health (JSON) and /metrics (Prometheus) on this TCP port. "
       "0: off.", "port", minimum=0, maximum=65535),
    _s("metrics_host", "str", "127.0.0.1", "Address the metrics server listens on. Use 0.0.0.0 only "
       "on a trusted network: the endpoints have no authentication."),
    _s("task_timeout", "float", 0.0, "Fail a task that runs longer than this (wall clock), stopping its "
       "processes. 0: no limit.", "seconds", minimum=0.0),
    _s("command_output_timeout", "float", 0.0, "Fail a command whose process prints nothing for this long "
       "(a hung render), stopping its processes. 0: no limit. Some Blender phases print nothing for "
       "minutes; leave room for them.", "seconds", minimum=0.0),
    _s("task_log_max_bytes", "int", 268435456, "Cap on the log one task may send. Beyond it the log ends "
       "with a note saying so and the task fails. 0: no cap.", "bytes", minimum=0),
    _s("min_free_disk_mb", "int", 100, "Take no task while the file system of task_update_queue_db, or of "
       "a [pre_task_check] write.NAME path, has less free space than this. 0: no check.", "MB", minimum=0),
    _s("tls_verify", "bool", True, "Check the Manager's TLS certificate (https:// URLs). Turning this off "
       "lets anyone on the network path impersonate the Manager and read this worker's secret."),
    _s("tls_ca_bundle", "str", "", "A PEM file of the certificate authorities to trust for the Manager's "
       "certificate, e.g. a studio's own CA. Empty: the system's trusted authorities."),
    _s("blender_filepath_wait", "float", 10.0, "How long a Blender command waits for a .blend file "
       "that does not exist yet (a network share catching up).", "seconds", minimum=0.0),
    _s("warm_blender", "bool", False, "Keep the scene loaded: render the next task of the same .blend "
       "file in the Blender that rendered the last one, instead of starting Blender and reading the "
       "file again (blender_render tasks whose options the worker understands; anything else, or a "
       "changed file, gets a fresh Blender). Frames are identical; see README."),
    _s("warm_blender_max_tasks", "int", 20, "Start a new warm Blender after this many tasks.", "tasks",
       minimum=1),
    _s("warm_blender_max_memory_mb", "int", 8192, "Start a new warm Blender when it uses more memory "
       "than this after a task (resident set). 0: no limit.", "MB", minimum=0),
    _s("warm_blender_idle_timeout", "float", 300.0, "Stop the warm Blender after this long without a "
       "task. It is always stopped when the worker goes asleep or shuts down. 0: never while awake.",
       "seconds", minimum=0.0),
)

BY_NAME = {s.name: s for s in SETTINGS}
LEGACY_NAMES = {"job_types": "task_types"}
# What registration gives a worker and save_credentials() writes to the credentials file.
CREDENTIALS = ("worker_id", "worker_secret")


@dataclasses.dataclass(frozen=True)
class Settings:
    """The effective settings: one typed, read-only attribute per entry of
    SETTINGS, in the same order.  The defaults live in SETTINGS only; the
    field types follow each Setting's type (``list`` is a tuple here, so
    nothing can change it in place), which tests/test_config.py checks.

    Made by ``load()``; ``replace()`` gives a new value with some settings
    changed, so an override (``--test``, a discovered Manager, the demo's
    intervals) never changes a value someone else holds."""

    manager_url: str
    manager_protocol: str
    restart_exit_code: int
    discovery_timeout: float
    task_types: tuple[str, ...]
    blender_exe: str
    ffmpeg_exe: str
    blender_threads: int
    blender_cycles_device: str
    blender_args_before: str
    blender_args_after: str
    child_env: str
    nickname: str
    worker_id: str
    worker_secret: str
    worker_registration_secret: str
    task_update_queue_db: str
    http_timeout: float
    fetch_task_interval: float
    backoff_initial: float
    backoff_max: float
    may_i_run_interval: float
    push_log_max_interval: float
    push_log_max_lines: int
    push_act_max_interval: float
    activity_interval: float
    output_produced_interval: float
    abort_grace_period: float
    shutdown_flush_timeout: float
    pre_task_check_interval: float
    log_file: str
    log_max_bytes: int
    log_backup_count: int
    task_log_folder: str
    task_log_keep: int
    metrics_port: int
    metrics_host: str
    task_timeout: float
    command_output_timeout: float
    task_log_max_bytes: int
    min_free_disk_mb: int
    tls_verify: bool
    tls_ca_bundle: str
    blender_filepath_wait: float
    warm_blender: bool
    warm_blender_max_tasks: int
    warm_blender_max_memory_mb: int
    warm_blender_idle_timeout: float
    # Not settings: where each value came from ("default", "override" or a
    # file), the files read, and section [pre_task_check] (read.NAME /
    # write.NAME = path).
    sources: typing.Mapping[str, str] = dataclasses.field(repr=False, compare=False)
    files: tuple[str, ...] = dataclasses.field(repr=False, compare=False)
    pre_task_checks: typing.Mapping[str, str] = dataclasses.field(repr=False)
    # Per file read: the settings it gives a value (its shared section and
    # this instance's), used or not; fworker.configsafety warns from these.
    file_settings: typing.Mapping[str, frozenset[str]] = dataclasses.field(
        repr=False, compare=False, default_factory=lambda: types.MappingProxyType({}))
    instance: str = statefiles.DEFAULT_INSTANCE  # the --instance this value is for (fworker.instance)

    def effective_nickname(self) -> str:
        return self.nickname or socket.gethostname() + (f"@{self.instance}" if self.instance else "")

    # Parsed once, when load() or replace() checks the settings (a bad value is
    # a ConfigError then), not at every child: cached on this value, and a
    # value with other settings (replace()) parses its own.
    @functools.cached_property
    def child_environment(self) -> typing.Mapping[str, str]:
        """``child_env`` as the variables every child gets added (fworker.childenv)."""
        try:
            return types.MappingProxyType(childenv.parse(self.child_env))
        except ValueError as ex:
            raise ConfigError(f"child_env (from {self.sources['child_env']}): {ex}") from None

    @functools.cached_property
    def blender_args(self) -> BlenderArgs:
        """The Blender arguments of every render (fworker.blenderargs)."""
        try:
            return BlenderArgs.of(self)
        except ValueError as ex:
            raise ConfigError(str(ex)) from None

    def values(self) -> dict[str, typing.Any]:
        """Every setting's value by name, in the order of SETTINGS."""
        return {s.name: getattr(self, s.name) for s in SETTINGS}

    def secrets(self) -> list[str]:
        """The values of the secret settings that are set: what no child may see."""
        return [value for name, value in self.values().items() if BY_NAME[name].secret and value]

    def masked(self) -> dict[str, typing.Any]:
        """The values to show: secrets as *****, a password inside a URL too."""
        def shown(name: str, value: typing.Any) -> typing.Any:
            if BY_NAME[name].secret and value:
                return "*****"
            return safetext.mask_url(value) if BY_NAME[name].type == "url" else value
        return {name: shown(name, value) for name, value in self.values().items()}

    def replace(self, **changes: typing.Any) -> Settings:
        """A new value with ``changes`` (setting name = value, converted and
        checked as ``load()`` does); this one stays as it is."""
        unknown = sorted(name for name in changes if name not in BY_NAME)
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
        values = {name: convert(BY_NAME[name], value, "override") for name, value in changes.items()}
        sources = types.MappingProxyType(dict(self.sources, **dict.fromkeys(changes, "override")))
        changed = dataclasses.replace(self, **values, sources=sources)
        _check_together(changed)
        return changed


def default_files(instance: str = statefiles.DEFAULT_INSTANCE) -> list[str]:
    # The 2.x credentials file has always doubled as the user's configuration file.
    own = [statefiles.credentials_path(instance)] if instance != statefiles.DEFAULT_INSTANCE else []
    return [os.path.abspath("flamenco-worker.cfg"), credentials_path(), *own]


def credentials_path() -> str:
    """Where the default instance keeps its Manager 2.x credentials (fworker.statefiles)."""
    return statefiles.credentials_path()


def load(extra_file: str | None = None, *, overrides: dict[str, typing.Any] | None = None,
         files: list[str] | None = None, instance: str = statefiles.DEFAULT_INSTANCE) -> Settings:
    """Defaults, then each existing file in order (for a named ``instance``,
    each file's instance section after its shared one), then ``overrides``."""
    raw: dict[str, typing.Any] = {s.name: s.default for s in SETTINGS}
    sources = {s.name: "default" for s in SETTINGS}
    statefiles.check_instance(instance)
    paths = list(default_files(instance) if files is None else files)
    if extra_file is not None:
        if not os.path.isfile(extra_file):
            raise ConfigError(f"configuration file {extra_file}: not found")
        paths.append(os.path.abspath(extra_file))
    read = []
    given: dict[str, frozenset[str]] = {}
    checks: dict[str, str] = {}
    saved: dict[str, typing.Any] = {}
    for path in paths:
        if not os.path.isfile(path):
            continue
        values, file_checks, own = configfile.read(path, instance, BY_NAME, LEGACY_NAMES)
        for name, value in values.items():
            if name in CREDENTIALS and instance and path != statefiles.credentials_path(instance):
                continue  # another instance's credentials: never this one's
            raw[name], sources[name] = value, path
        for name, value in own.items():
            raw[name], sources[name] = value, f"{path} [{instance_section(instance)}]"
        checks.update(file_checks)
        read.append(path)
        given[path] = frozenset(name for name, value in {**values, **own}.items() if value)
        if path == statefiles.credentials_path(instance):
            saved = {name: values[name] for name in CREDENTIALS if name in values}
    if saved:
        # The credentials the worker saved win over any found in another file (a
        # -c file's would otherwise be refused, re-registered and saved, on every
        # start); fworker.configsafety warns about those.
        for name in CREDENTIALS:
            raw[name], sources[name] = saved.get(name, BY_NAME[name].default), statefiles.credentials_path(instance)
    for name, value in (overrides or {}).items():
        raw[name], sources[name] = value, "override"
    values = {name: convert(BY_NAME[name], raw[name], sources[name]) for name in raw}
    settings = Settings(**values, sources=types.MappingProxyType(sources), files=tuple(read),
                        file_settings=types.MappingProxyType(given),
                        pre_task_checks=types.MappingProxyType(checks), instance=instance)
    _check_together(settings)
    return settings


@functools.cache
def defaults() -> Settings:
    """The settings with every value from SETTINGS, no file read.  One
    shared value: it cannot be changed."""
    return load(files=[])


def _check_together(settings: Settings) -> None:
    sources = settings.sources
    if settings.backoff_max < settings.backoff_initial:
        raise ConfigError(
            f"backoff_max ({settings.backoff_max:g}, from {sources['backoff_max']}) must not be less than "
            f"backoff_initial ({settings.backoff_initial:g}, from {sources['backoff_initial']})")
    if not settings.task_types:
        raise ConfigError(f"task_types (from {sources['task_types']}) is empty: the worker would never get a task")
    if settings.manager_protocol not in MANAGER_PROTOCOLS:
        raise ConfigError(f"manager_protocol (from {sources['manager_protocol']}) is {settings.manager_protocol!r}; "
                          f"use one of {', '.join(MANAGER_PROTOCOLS)}")
    # Parsed here, once: a bad value is an error now, not at the first child.
    settings.child_environment  # noqa: B018
    settings.blender_args  # noqa: B018
