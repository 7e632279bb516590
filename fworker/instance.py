"""Named instances: several workers on one machine, one per GPU, none sharing state.

An instance is chosen with ``--instance NAME`` or, for service managers, the
environment variable ``FLAMENCO_WORKER_INSTANCE`` (empty: the default
instance, the one every installation had before instances existed).  Its
settings are read by ``fworker.config.load(instance=...)``: its own section
``[flamenco-worker@NAME]`` in any file, its own credentials file.

``settle()`` then gives every state file its instance's own name, and is
the one place that does: a path setting left at its default, or set in a
section every instance reads, gets ``@NAME`` before its extension
(``worker.log`` -> ``worker@gpu0.log``, ``statefiles.for_instance``); a path
set in the instance's own section or file is used as it is written, even
when that is the default's name.  Two instances set onto one queue anyway
(or one instance started twice) are refused by the queue's lock, with an
error that names the instance (``refusal``).
"""
from __future__ import annotations

import dataclasses
import os
import typing

from fworker import statefiles
from fworker.config import Settings
from fworker.errors import AlreadyRunning
from fworker.statefiles import StateFiles

ENV_VAR = "FLAMENCO_WORKER_INSTANCE"


def chosen(flag: str | None, environ: typing.Mapping[str, str] | None = None) -> str:
    """The instance to run: ``--instance`` if given, else the environment
    variable; ``ConfigError`` for a name that cannot be one."""
    name = flag if flag is not None else (os.environ if environ is None else environ).get(ENV_VAR, "")
    return statefiles.check_instance(name.strip())


def own(settings: Settings, name: str) -> bool:
    """Whether setting ``name`` was set for this instance alone (its own
    section or file, or an override) rather than for every instance."""
    source = settings.sources.get(name, "default")
    instance = settings.instance
    return source == "override" or (bool(instance) and (
        source.endswith(f"@{instance}]") or source == statefiles.credentials_path(instance)))


def settle(settings: Settings) -> tuple[Settings, StateFiles]:
    """``settings`` with its instance's state files (absolute paths), and those files."""
    def path(name: str) -> str:
        value: str = getattr(settings, name)
        return value if own(settings, name) else statefiles.for_instance(value, settings.instance)

    # dataclasses.replace, not Settings.replace: the values stay strings of
    # the same settings, and their sources stay what --check-config shows.
    named = dataclasses.replace(settings, task_update_queue_db=path("task_update_queue_db"),
                                log_file=path("log_file"), task_log_folder=path("task_log_folder"))
    state = StateFiles.of(named, settings.instance)
    return dataclasses.replace(named, task_update_queue_db=state.queue, log_file=state.log_file,
                               task_log_folder=state.task_log_folder), state


def describe(settings: Settings) -> str:
    return settings.instance or "default"


def refusal(ex: AlreadyRunning, instance: str) -> AlreadyRunning:
    """``ex`` again, saying which instance was refused."""
    who = f"instance {instance!r}" if instance else "the default instance"
    return AlreadyRunning(ex.lock_path, ex.holder_pid, who)
