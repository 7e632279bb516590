"""One entry of the settings table (``Setting``) and its values: a text from a
configuration file, or a Python value, converted to the setting's type and
checked against its bounds (``convert``), and back as a file holds it
(``format_value``)."""
from __future__ import annotations

import dataclasses
import math
import typing
import urllib.parse

from fworker.errors import ConfigError


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


def _to_list(value: typing.Any) -> tuple[str, ...]:
    items = value if isinstance(value, (list, tuple)) else str(value).split()
    return tuple(item for part in items for item in str(part).split())


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
    if isinstance(value, (bool, float)):
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


def format_value(value: typing.Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return " ".join(value)
    return str(value)
