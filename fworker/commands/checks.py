"""The checks of a command's settings that need nothing but the settings: a
string, a number, an integer, required or optional, each refusal an
``InvalidSettings`` naming the command and the setting.  ``Command``
(fworker.commands.base) has them, beside the checks that need the worker
(command lines, the programs they name).
"""
from __future__ import annotations

import typing

from fworker.errors import InvalidSettings
from fworker.task import shown

# A command's settings: the JSON object of the Manager's task (``validate``'s
# input; its values may be anything JSON has), or the checked and normalised
# dict ``validate`` returns (``execute``'s input).
CommandSettings = dict[str, typing.Any]

# Settings come from the Manager and may be megabytes: a message quotes a cut repr.
QUOTE_LIMIT = 200

_T = typing.TypeVar("_T")


class SettingChecks:
    """Helpers for ``validate()``, by the command's ``name``."""

    name: typing.ClassVar[str] = ""  # the command's, set by each subclass

    def _invalid(self, setting: str, problem: str) -> InvalidSettings:
        return InvalidSettings(self.name, setting, problem)

    def _required(self, key: str, value: _T | None) -> _T:
        if value is None:  # absent or JSON null: either way there is no value to run with
            raise self._invalid(key, "is required")
        return value

    def require_str(self, settings: CommandSettings, key: str, *, allow_empty: bool = False) -> str:
        return self._required(key, self.optional_str(settings, key, None, allow_empty=allow_empty))

    def optional_str(self, settings: CommandSettings, key: str, default: str | None, *,
                     allow_empty: bool = True) -> str | None:
        value = settings.get(key, default)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self._invalid(key, f"must be a string, not {type(value).__name__} {shown(value, QUOTE_LIMIT)}")
        if not allow_empty and not value.strip():
            raise self._invalid(key, "must not be empty")
        return value

    def require_number(self, settings: CommandSettings, key: str, *, minimum: float | None = None) -> float:
        return self._required(key, self.optional_number(settings, key, None, minimum=minimum))

    def optional_number(self, settings: CommandSettings, key: str, default: float | None, *,
                        minimum: float | None = None) -> float | None:
        value = settings.get(key, default)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._invalid(key, f"must be a number, not {type(value).__name__} {shown(value, QUOTE_LIMIT)}")
        if minimum is not None and value < minimum:
            raise self._invalid(key, f"must be at least {minimum}, not {value!r}")
        return value

    def require_int(self, settings: CommandSettings, key: str, *, minimum: int | None = None) -> int:
        return self._required(key, self.optional_int(settings, key, None, minimum=minimum))

    def optional_int(self, settings: CommandSettings, key: str, default: int | None, *,
                     minimum: int | None = None) -> int | None:
        value = settings.get(key, default)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._invalid(key, f"must be an integer, not {type(value).__name__} {shown(value, QUOTE_LIMIT)}")
        if minimum is not None and value < minimum:
            raise self._invalid(key, f"must be at least {minimum}, not {value!r}")
        return value
