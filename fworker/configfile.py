"""One configuration file read: its sections, its keys, its [pre_task_check].

The file format, apart from what the settings mean (``fworker.config`` holds
the table, merges the files in order and converts the values).  Everything
lives in section ``[flamenco-worker]``; a named instance's own settings in
``[flamenco-worker@NAME]``; section ``[pre_task_check]`` holds the paths
``fworker.pretask`` checks.  Anything else is refused, naming the file.
"""
from __future__ import annotations

import typing

import configobj

from fworker import statefiles
from fworker.errors import ConfigError

SECTION = "flamenco-worker"
# read.NAME / write.NAME = path: checked before each task (fworker.pretask).
PRE_TASK_SECTION = "pre_task_check"


def instance_section(instance: str) -> str:
    """The section of a named instance's own settings, ``[flamenco-worker@NAME]``."""
    return f"{SECTION}@{instance}"


def read(path: str, instance: str, known: typing.Container[str], legacy: typing.Mapping[str, str],
         ) -> tuple[dict[str, typing.Any], dict[str, str], dict[str, typing.Any]]:
    """The raw [flamenco-worker] values of one file, by setting name (a key in
    ``legacy`` is read as the name it maps to; a name not ``known`` is an
    error), its [pre_task_check] entries, and the values of ``instance``'s own
    section."""
    try:
        cfg = configobj.ConfigObj(path, encoding="utf-8", interpolation=False, file_error=True)
    except UnicodeDecodeError as ex:
        raise ConfigError(f"configuration file {path}: not valid UTF-8 ({ex.reason} at byte {ex.start})") from None
    except (configobj.ConfigObjError, OSError) as ex:
        raise ConfigError(f"configuration file {path}: cannot be parsed: {ex}") from None
    for key in cfg.scalars:
        raise ConfigError(f"configuration file {path}: key {key!r} is outside section [{SECTION}]")
    sections: dict[str, dict[str, typing.Any]] = {}
    for section in cfg.sections:
        named, at, other = section.partition("@")
        if at and named == SECTION:
            try:
                statefiles.check_instance(other or "@")
            except ConfigError as ex:
                raise ConfigError(f"configuration file {path}: section [{section}]: {ex}") from None
        elif section not in (SECTION, PRE_TASK_SECTION):
            raise ConfigError(f"configuration file {path}: unknown section [{section}]")
        if named == SECTION:
            sections[section] = _section_values(path, section, cfg[section], known, legacy)
    checks = dict(cfg.get(PRE_TASK_SECTION, {}))
    parse_pre_task_checks(checks, path)
    own = sections.get(instance_section(instance), {}) if instance else {}
    return sections.get(SECTION, {}), checks, own


def _section_values(path: str, section: str, entries: typing.Mapping[str, typing.Any],
                    known: typing.Container[str], legacy: typing.Mapping[str, str]) -> dict[str, typing.Any]:
    values: dict[str, typing.Any] = {}
    for key, value in entries.items():
        name = legacy.get(key, key)
        if name not in known or isinstance(value, dict):
            raise ConfigError(f"configuration file {path}: unknown key {key!r} in [{section}]")
        values[name] = value
    return values


def parse_pre_task_checks(values: typing.Mapping[str, str], source: str) -> tuple[list[str], list[str]]:
    """Section [pre_task_check]: its ``read.*`` and ``write.*`` keys into two
    lists of paths; ``ConfigError`` naming ``source`` for anything else."""
    readable: list[str] = []
    writable: list[str] = []
    for key, value in values.items():
        kind, _, _name = key.partition(".")
        if kind not in ("read", "write") or not _name:
            raise ConfigError(f"{source}: key {key!r} in [{PRE_TASK_SECTION}] must be read.NAME or write.NAME")
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{source}: [{PRE_TASK_SECTION}] {key} must be one path")
        (readable if kind == "read" else writable).append(value.strip())
    return readable, writable
