"""A validator for the JSON Schema subset of schema.py, as strict as the Manager's.

The rules, each refusing with a message that names the field (``supported_task_types[1]:
expected a string, got an integer``):

- ``$ref``: the named schema of schema.SCHEMAS;
- ``type``: ``object``, ``array``, ``string``, ``integer``, ``number``, ``boolean``;
  ``integer`` is a JSON integer literal only (``3.0`` fails to decode into the Go
  struct, so the Manager refuses it), and a boolean is never a number;
- ``null`` is refused unless the schema says ``nullable``;
- ``format``: ``int32`` and ``int64`` bound an integer; ``binary`` is bytes;
- ``enum``: the value must be one of the list;
- ``required``: every named property present; ``properties``: each present one
  valid; undeclared properties are ignored (``additionalProperties`` is not checked,
  as the Manager does not);
- ``items``: each element valid.
"""
import json
import typing

from ..common import Row
from ..decoding import describe
from . import schema as schema_module
from .schema import Schema

_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
# A Go ``int`` on the 64-bit platforms the Manager runs on.
_DEFAULT_INT_RANGE = _INT_RANGES["int64"]


class Invalid(ValueError):
    """A value that does not fit its schema; ``field`` is the dotted path to it."""

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}" if field else problem)


def resolve(schema: Schema, schemas: dict[str, Schema] | None = None) -> Schema:
    """The schema itself, or the one its ``$ref`` names."""
    schemas = schema_module.SCHEMAS if schemas is None else schemas
    seen = set()
    while "$ref" in schema:
        name = schema["$ref"]
        if name in seen or name not in schemas:
            raise KeyError(f"unresolvable schema reference {name!r}")
        seen.add(name)
        schema = schemas[name]
    return schema


def validate(value: object, schema: Schema | str, field: str = "",
             schemas: dict[str, Schema] | None = None) -> None:
    """Raise Invalid for the first rule value breaks; schema may be a name of SCHEMAS."""
    if isinstance(schema, str):
        schema = {"$ref": schema}
    schema = resolve(schema, schemas)
    if value is None:
        if schema.get("nullable"):
            return
        raise Invalid(field, "must not be null")
    kind = schema.get("type")
    if kind is not None:
        _TYPE_CHECKS[kind](value, schema, field)
    if "enum" in schema and value not in schema["enum"]:
        choices = ", ".join(str(choice) for choice in schema["enum"])
        raise Invalid(field, f"{value!r} is not one of {choices}")
    if isinstance(value, dict):
        _check_object(value, schema, field, schemas)
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            validate(item, schema["items"], f"{field}[{index}]", schemas)


def _check_object(value: Row, schema: Schema, field: str, schemas: dict[str, Schema] | None) -> None:
    prefix = f"{field}." if field else ""
    for name in schema.get("required", []):
        if name not in value:
            raise Invalid(prefix + name, "required but missing")
    for name, sub in schema.get("properties", {}).items():
        if name in value:
            validate(value[name], sub, prefix + name, schemas)


def _wrong(field: str, expected: str, value: object) -> typing.NoReturn:
    raise Invalid(field, f"expected {expected}, got {describe(value)}")


def _object(value: object, schema: Schema, field: str) -> None:
    if not isinstance(value, dict):
        _wrong(field, "an object", value)


def _array(value: object, schema: Schema, field: str) -> None:
    if not isinstance(value, list):
        _wrong(field, "an array", value)


def _string(value: object, schema: Schema, field: str) -> None:
    if schema.get("format") == "binary":
        if not isinstance(value, (bytes, bytearray)):
            _wrong(field, "binary data", value)
    elif not isinstance(value, str):
        _wrong(field, "a string", value)


def _integer(value: object, schema: Schema, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        _wrong(field, "an integer", value)
    low, high = _INT_RANGES.get(schema.get("format", ""), _DEFAULT_INT_RANGE)
    if not low <= value <= high:
        raise Invalid(field, f"{value} is out of range {low}..{high}")


def _number(value: object, schema: Schema, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _wrong(field, "a number", value)


def _boolean(value: object, schema: Schema, field: str) -> None:
    if not isinstance(value, bool):
        _wrong(field, "a boolean", value)


_TYPE_CHECKS: dict[str, typing.Callable[[object, Schema, str], None]] = {
    "object": _object, "array": _array, "string": _string, "integer": _integer,
    "number": _number, "boolean": _boolean,
}


def _reject_constant(name: str) -> typing.NoReturn:
    raise Invalid("", f"{name} is not valid JSON")


def parse_json(raw: bytes) -> typing.Any:
    """A request body as JSON; Invalid for an empty, non-UTF-8 or malformed one.
    NaN and Infinity are refused, as Go's decoder does."""
    if not raw.strip():
        raise Invalid("", "request body is required but missing")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as ex:
        raise Invalid("", f"request body is not UTF-8: {ex}") from None
    except json.JSONDecodeError as ex:
        raise Invalid("", f"request body is not valid JSON: {ex}") from None


def media_type(content_type: str) -> str:
    """``application/json; charset=utf-8`` -> ``application/json``."""
    return content_type.split(";", 1)[0].strip().lower()


def check_body(operation: schema_module.Operation, content_type: str, raw: bytes) -> typing.Any:
    """The decoded body of a request to an operation of schema.OPERATIONS
    (bytes for a binary body, None when the operation takes none); Invalid else."""
    body_schema = operation.get("body")
    if body_schema is None:
        return None  # bodies of operations that declare none are not read by the Manager
    declared = operation["types"]
    if not content_type:
        raise Invalid("Content-Type", f"header is required (one of {', '.join(declared)})")
    if media_type(content_type) not in declared:
        raise Invalid("Content-Type", f"{content_type!r} is not one of {', '.join(declared)}")
    if resolve({"$ref": body_schema}).get("format") == "binary":
        if not raw:
            raise Invalid("", "request body is required but missing")
        return raw
    value = parse_json(raw)
    validate(value, body_schema)
    return value
