"""Strict decoding of JSON request bodies, the way the Go Manager decodes them.

The real Manager decodes bodies into fixed Go structs: unknown keys are
ignored, but a value of the wrong type is an error, and an integer field
accepts only a JSON integer (not ``12.5``, ``"12"`` nor ``true``; Python's
``bool`` is an ``int``, so it is checked explicitly).  We are stricter in a
few places that can only catch worker bugs: ``null`` values, ``NaN`` and
out-of-range percentages are rejected too.

A spec maps field names to checkers; a checker takes ``(value, name)`` and
returns the value or raises :class:`DecodeError`.  ``jobs.py`` reuses the
checkers with dotted paths as names (``tasks[2].priority``).
"""
import json
import typing

from .common import Row

# The range of a Go int on 64-bit platforms.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

Checker = typing.Callable[[typing.Any, str], typing.Any]


class DecodeError(ValueError):
    """A body or value that does not fit the expected shape."""


def describe(value: typing.Any) -> str:
    """A JSON value's type, for error messages (of v3/validate.py too)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return f"a number with a fraction ({value!r})"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (bytes, bytearray)):  # the Flamenco 3 validator's binary bodies
        return "bytes"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _reject_constant(name: str) -> typing.NoReturn:
    raise DecodeError(f"{name} is not valid JSON")


def parse_object(raw: bytes) -> Row:
    """Parse a request body that must be one JSON object."""
    if not raw.strip():
        raise DecodeError("empty body (send {} when there is nothing to say)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as ex:
        raise DecodeError(f"body is not UTF-8: {ex}") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as ex:
        raise DecodeError(str(ex)) from None
    if not isinstance(value, dict):
        raise DecodeError(f"expected a JSON object, got {describe(value)}")
    return value


def decode(raw: bytes, spec: typing.Mapping[str, Checker], required: typing.Iterable[str] = ()) -> Row:
    """Parse raw as a JSON object and check the fields named in spec.

    Returns only the fields of spec that are present; other keys are ignored,
    as the Go Manager does.
    """
    return check_fields(parse_object(raw), spec, required)


def check_fields(doc: Row, spec: typing.Mapping[str, Checker], required: typing.Iterable[str] = (),
                 prefix: str = "") -> Row:
    """Check the fields of an already parsed object against spec."""
    for name in required:
        if name not in doc:
            raise DecodeError(f"{prefix}{name}: missing")
    return {name: check(doc[name], prefix + name) for name, check in spec.items() if name in doc}


def string(value: typing.Any, name: str) -> str:
    if not isinstance(value, str):
        raise DecodeError(f"{name}: expected a string, got {describe(value)}")
    return value


def non_empty_string(value: typing.Any, name: str) -> str:
    text = string(value, name)
    if not text:
        raise DecodeError(f"{name}: must not be empty")
    return text


def boolean(value: typing.Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise DecodeError(f"{name}: expected a boolean, got {describe(value)}")
    return value


def integer(value: typing.Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DecodeError(f"{name}: expected an integer, got {describe(value)}")
    if not INT64_MIN <= value <= INT64_MAX:
        raise DecodeError(f"{name}: {value} does not fit in a 64-bit integer")
    return value


def integer_in(low: int, high: int) -> Checker:
    """A checker for an integer within [low, high]."""
    def check(value: typing.Any, name: str) -> int:
        number = integer(value, name)
        if not low <= number <= high:
            raise DecodeError(f"{name}: {number} is out of range {low}..{high}")
        return number
    return check


def one_of(*choices: str) -> Checker:
    """A checker for a string from a fixed set."""
    def check(value: typing.Any, name: str) -> str:
        text = string(value, name)
        if text not in choices:
            raise DecodeError(f"{name}: {text!r} is not one of {', '.join(choices)}")
        return text
    return check


def string_list(value: typing.Any, name: str) -> list[str]:
    if not isinstance(value, list):
        raise DecodeError(f"{name}: expected an array of strings, got {describe(value)}")
    return [string(item, f"{name}[{index}]") for index, item in enumerate(value)]


def json_object(value: typing.Any, name: str) -> Row:
    if not isinstance(value, dict):
        raise DecodeError(f"{name}: expected an object, got {describe(value)}")
    return value


def number(value: typing.Any, name: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DecodeError(f"{name}: expected a number, got {describe(value)}")
    return value


def metrics(value: typing.Any, name: str) -> Row:
    """``{"timing": {phase: seconds}}``; other keys are kept unchecked."""
    doc = json_object(value, name)
    if "timing" in doc:
        timing = json_object(doc["timing"], f"{name}.timing")
        for phase, seconds in timing.items():
            number(seconds, f"{name}.timing.{phase}")
    return doc
