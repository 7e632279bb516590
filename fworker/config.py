"""Settings: declared once, in SETTINGS, and used for parsing, validation,
``--help``, ``--check-config`` and the sample ``etc/flamenco-worker.cfg``.

Files are read in this order, each overriding the one before: the defaults
below, ``flamenco-worker.cfg`` in the current directory,
``~/.flamenco-worker.cfg``, then the file given with ``-c``.  A missing file
is skipped.  Everything lives in section ``[flamenco-worker]``.
"""
from __future__ import annotations

import dataclasses
import math
import os
import socket
import textwrap
import typing
import urllib.parse

import configobj

from fworker import pretask
from fworker.errors import ConfigError

SECTION = "flamenco-worker"
DEFAULT_TASK_TYPES = "sleep blender-render file-management exr-merge video-encoding debug"


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    type: str  # str, int, float, bool, list, url
    default: typing.Any
    help: str
    unit: str = ""
    secret: bool = False
    minimum: float | None = None
    maximum: float | None = None


def _s(name: str, type_: str, default: typing.Any, help_: str, unit: str = "", secret: bool = False,
       minimum: float | None = None, maximum: float | None = None) -> Setting:
    return Setting(name, type_, default, textwrap.dedent(help_).strip(), unit, secret, minimum, maximum)


SETTINGS: tuple[Setting, ...] = (
    _s("manager_url", "url", "", "URL of the Flamenco Manager, e.g. http://manager:8080/. "
       "Empty: find the Manager on the local network with UPnP/SSDP."),
    _s("discovery_timeout", "float", 5.0, "With no manager_url: how long to wait for a Manager to answer "
       "the UPnP/SSDP search.", "seconds", minimum=0.1),
    _s("task_types", "list", DEFAULT_TASK_TYPES, "Task types this worker runs, separated by spaces. "
       "The legacy name job_types is accepted too."),
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
    _s("backoff_max", "float", 60.0, "Longest wait between attempts to reach the Manager.",
       "seconds", minimum=0.01),
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
)

BY_NAME = {s.name: s for s in SETTINGS}
LEGACY_NAMES = {"job_types": "task_types"}


class Settings:
    """The effective settings: one attribute per Setting, plus where each
    value came from (``sources``) and which files were read."""

    def __init__(self, values: dict[str, typing.Any], sources: dict[str, str], files: list[str],
                 checks: dict[str, str] | None = None):
        self.__dict__.update(values)
        self.sources = sources
        self.files = files
        # [pre_task_check]: read.NAME / write.NAME = path
        self.pre_task_checks = dict(checks or {})

    def effective_nickname(self) -> str:
        return self.nickname or socket.gethostname()

    def masked(self) -> dict[str, typing.Any]:
        return {s.name: ("*****" if s.secret and getattr(self, s.name) else getattr(self, s.name))
                for s in SETTINGS}

    def replace(self, **changes: typing.Any) -> "Settings":
        values = {s.name: getattr(self, s.name) for s in SETTINGS}
        values.update(changes)
        sources = dict(self.sources, **{k: "override" for k in changes})
        return Settings(values, sources, list(self.files), self.pre_task_checks)


def default_files() -> list[str]:
    return [os.path.abspath("flamenco-worker.cfg"), credentials_path()]


def credentials_path() -> str:
    return os.path.join(os.path.expanduser("~"), ".flamenco-worker.cfg")


def load(extra_file: str | None = None, *, overrides: dict[str, typing.Any] | None = None,
         files: list[str] | None = None) -> Settings:
    """Defaults, then each existing file in order, then ``overrides``."""
    raw: dict[str, typing.Any] = {s.name: s.default for s in SETTINGS}
    sources = {s.name: "default" for s in SETTINGS}
    paths = list(default_files() if files is None else files)
    if extra_file is not None:
        if not os.path.isfile(extra_file):
            raise ConfigError(f"configuration file {extra_file}: not found")
        paths.append(os.path.abspath(extra_file))
    read = []
    checks: dict[str, str] = {}
    for path in paths:
        if not os.path.isfile(path):
            continue
        values, file_checks = read_file(path)
        for name, value in values.items():
            raw[name], sources[name] = value, path
        checks.update(file_checks)
        read.append(path)
    for name, value in (overrides or {}).items():
        raw[name], sources[name] = value, "override"
    values = {name: convert(BY_NAME[name], raw[name], sources[name]) for name in raw}
    _check_together(values, sources)
    return Settings(values, sources, read, checks)


def read_file(path: str) -> tuple[dict[str, typing.Any], dict[str, str]]:
    """The raw [flamenco-worker] values of one file, names checked, and its
    [pre_task_check] entries."""
    try:
        cfg = configobj.ConfigObj(path, encoding="utf-8", interpolation=False, file_error=True)
    except UnicodeDecodeError as ex:
        raise ConfigError(f"configuration file {path}: not valid UTF-8 ({ex.reason} at byte {ex.start})") from None
    except (configobj.ConfigObjError, OSError) as ex:
        raise ConfigError(f"configuration file {path}: cannot be parsed: {ex}") from None
    values: dict[str, typing.Any] = {}
    for key in cfg.scalars:
        raise ConfigError(f"configuration file {path}: key {key!r} is outside section [{SECTION}]")
    for section in cfg.sections:
        if section not in (SECTION, pretask.SECTION):
            raise ConfigError(f"configuration file {path}: unknown section [{section}]")
    for key, value in cfg.get(SECTION, {}).items():
        name = LEGACY_NAMES.get(key, key)
        if name not in BY_NAME:
            raise ConfigError(f"configuration file {path}: unknown key {key!r} in [{SECTION}]")
        values[name] = value
    checks = dict(cfg.get(pretask.SECTION, {}))
    pretask.parse_section(checks, path)
    return values, checks


def convert(setting: Setting, value: typing.Any, source: str) -> typing.Any:
    """``value`` (a string from a file, or a Python value) as the setting's type."""
    where = f"{source}: {setting.name}" if source not in ("default", "override") else setting.name

    def bad(problem: str) -> ConfigError:
        shown = "*****" if setting.secret else repr(value)
        return ConfigError(f"{where} = {shown}: {problem}")

    if isinstance(value, list) and setting.type != "list":
        raise bad("contains an unquoted comma; put the value in double quotes")
    try:
        result = _CONVERTERS[setting.type](value)
    except (TypeError, ValueError) as ex:
        raise bad(str(ex)) from None
    if setting.minimum is not None and result < setting.minimum:
        raise bad(f"must be at least {setting.minimum:g}")
    if setting.maximum is not None and result > setting.maximum:
        raise bad(f"must be at most {setting.maximum:g}")
    return result


def _to_bool(value: typing.Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "yes", "true", "on"):
        return True
    if text in ("0", "no", "false", "off"):
        return False
    raise ValueError("must be true or false")


def _to_list(value: typing.Any) -> list[str]:
    items = value if isinstance(value, (list, tuple)) else str(value).split()
    return [item for part in items for item in str(part).split()]


def _to_url(value: typing.Any) -> str:
    text = str(value).strip()
    if not text:
        return ""
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host name")
    try:
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError as ex:
        raise ValueError(f"has a bad port: {ex}") from None
    return text if text.endswith("/") else text + "/"


def _to_int(value: typing.Any) -> int:
    if isinstance(value, bool) or isinstance(value, float):
        raise ValueError("must be a whole number")
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError("must be a whole number") from None


def _to_float(value: typing.Any) -> float:
    if isinstance(value, bool):
        raise ValueError("must be a number")
    try:
        result = float(str(value).strip())
    except ValueError:
        raise ValueError("must be a number") from None
    if not math.isfinite(result):
        # nan compares false with everything and inf is no limit at all:
        # either would silently turn a timing setting off.
        raise ValueError("must be a finite number")
    return result


_CONVERTERS: dict[str, typing.Callable[[typing.Any], typing.Any]] = {
    "str": lambda v: str(v).strip() if not isinstance(v, (list, dict)) else _raise(TypeError("must be text")),
    "int": _to_int,
    "float": _to_float,
    "bool": _to_bool,
    "list": _to_list,
    "url": _to_url,
}


def _raise(ex: Exception) -> typing.NoReturn:
    raise ex


def _check_together(values: dict[str, typing.Any], sources: dict[str, str]) -> None:
    if values["backoff_max"] < values["backoff_initial"]:
        raise ConfigError(
            f"backoff_max ({values['backoff_max']:g}, from {sources['backoff_max']}) must not be less than "
            f"backoff_initial ({values['backoff_initial']:g}, from {sources['backoff_initial']})")
    if not values["task_types"]:
        raise ConfigError(f"task_types (from {sources['task_types']}) is empty: the worker would never get a task")


def sample_config() -> str:
    """The documented sample configuration, ``etc/flamenco-worker.cfg``."""
    lines = [
        "# Flamenco Worker configuration (fworker).",
        "#",
        "# Read in this order, each overriding the one before: built-in defaults,",
        "# ./flamenco-worker.cfg, ~/.flamenco-worker.cfg, then the file given with -c.",
        "# Every setting is shown with its default; uncomment and edit to change it.",
        "# Values with a comma or a '#' must be put in double quotes.",
        "# Generated from fworker/config.py (python -m fworker.config > etc/flamenco-worker.cfg).",
        "",
        f"[{SECTION}]",
    ]
    for s in SETTINGS:
        lines.append("")
        for line in textwrap.wrap(s.help, 76):
            lines.append(f"# {line}")
        if s.unit:
            lines.append(f"# Unit: {s.unit}.")
        lines.append(f"# {s.name} = {format_value(s.default)}".rstrip())
    lines += [
        "",
        f"[{pretask.SECTION}]",
        "# Checked before asking for each task; on failure the worker goes to state",
        "# 'error' and checks again after pre_task_check_interval. read.NAME paths must",
        "# be readable, write.NAME paths writable (tested with a temporary file).",
        "# read.textures = /mnt/shared/textures",
        "# write.renders = /mnt/shared/renders",
    ]
    return "\n".join(lines) + "\n"


def format_value(value: typing.Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return " ".join(value)
    return str(value)


def help_epilog() -> str:
    """Settings as listed at the end of ``--help``."""
    rows = ["configuration keys (section [flamenco-worker]; see etc/flamenco-worker.cfg):"]
    for s in SETTINGS:
        default = format_value(s.default) or '""'
        unit = f" {s.unit}" if s.unit else ""
        rows.append(f"  {s.name} (default {default}{unit})")
        rows.extend("      " + line for line in textwrap.wrap(s.help, 70))
    return "\n".join(rows)


def save_credentials(worker_id: str, secret: str, path: str | None = None) -> str:
    """Write worker_id and worker_secret into ``path`` (default
    ~/.flamenco-worker.cfg), keeping everything else in it, comments
    included.  The new file is created 0600 and atomically renamed over the
    old one, so the secret is never world-readable, not even for an instant."""
    path = path or credentials_path()
    try:
        cfg = configobj.ConfigObj(path, encoding="utf-8", interpolation=False, indent_type="")
    except (configobj.ConfigObjError, UnicodeDecodeError) as ex:
        raise ConfigError(f"configuration file {path}: cannot be parsed to store credentials: {ex}") from None
    if SECTION not in cfg:
        cfg[SECTION] = {}
    cfg[SECTION]["worker_id"] = worker_id
    cfg[SECTION]["worker_secret"] = secret
    cfg.filename = None
    lines = [line if isinstance(line, bytes) else line.encode("utf-8") for line in cfg.write()]
    _atomic_write(path, b"\n".join(lines) + b"\n")
    return path


def _atomic_write(path: str, data: bytes) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


if __name__ == "__main__":
    print(sample_config(), end="")
