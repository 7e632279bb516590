"""fworker: a Flamenco render-farm Worker.

gevent must patch the standard library before anything else imports
``socket``, ``ssl`` or ``threading`` (requests and urllib3 among them), so the
package does it on first import.  Every entry point imports ``fworker`` first.

The public API (docs/API.md) is listed in ``__all__`` and imported on first
use, so that ``import fworker`` stays cheap and does nothing before the patch.
"""
from gevent import monkey as _monkey

_monkey.patch_all()

import importlib as _importlib  # noqa: E402  (after the patch, on purpose)
import typing as _typing  # noqa: E402  (after the patch)

from fworker.version import __version__  # noqa: E402  (after the patch)

# Public name -> the internal module that defines it.
_EXPORTS = {
    "load_settings": "fworker.api",
    "start_worker": "fworker.api",
    "WorkerHandle": "fworker.api",
    "register_command": "fworker.api",
    "Settings": "fworker.config",
    "EVENTS": "fworker.events",
    "Command": "fworker.commands.base",
    "CommandContext": "fworker.commands.base",
    "CommandFailed": "fworker.errors",
    "InvalidSettings": "fworker.errors",
    "ConfigError": "fworker.errors",
}

__all__ = ["__version__", *_EXPORTS]  # noqa: PLE0604  (_EXPORTS's keys: names, all str)


def __getattr__(name: str) -> _typing.Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fworker' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if _typing.TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ does it
    # "X as X": re-exported, for type checkers that do not read __all__'s dynamic part.
    from fworker.api import (
        WorkerHandle as WorkerHandle,
        load_settings as load_settings,
        register_command as register_command,
        start_worker as start_worker,
    )
    from fworker.commands.base import Command as Command, CommandContext as CommandContext
    from fworker.config import Settings as Settings
    from fworker.errors import (
        CommandFailed as CommandFailed,
        ConfigError as ConfigError,
        InvalidSettings as InvalidSettings,
    )
    from fworker.events import EVENTS as EVENTS
