"""Requests checked against an OpenAPI 3 document, such as the one a Flamenco 3 Manager
serves at ``/api/v3/openapi3.json``: the document's schemas put in the form the
project's validator reads (``fworker/devmanager/v3/validate.py``: ``$ref`` by name,
``allOf`` merged), its paths matched to recorded requests, each request body validated
against the operation's ``requestBody`` schema and each answer's status looked up in
the operation's ``responses``."""
from __future__ import annotations

import dataclasses
import re
import typing

from fworker.devmanager.v3 import validate

REF = "#/components/schemas/"
JSON = "application/json"
_MAX_DEPTH = 20


@dataclasses.dataclass
class Operation:
    name: str  # operationId (or METHOD path when it has none)
    method: str
    template: str
    pattern: re.Pattern
    body: dict | None  # the JSON request body's schema; None: none declared
    body_required: bool
    other_types: tuple[str, ...]  # media types of a body other than JSON (images)
    statuses: frozenset[str]  # "204", "default", ...


class Document:
    def __init__(self, document: dict):
        named = document.get("components", {}).get("schemas", {})
        refs = {name: _refs(schema) for name, schema in named.items()}
        self.schemas = {name: _flatten(schema, refs, 0) for name, schema in refs.items()}
        self.operations = [op for template, item in document.get("paths", {}).items()
                           for op in _operations(template, item, self.schemas)]

    def operation(self, method: str, path: str) -> Operation | None:
        for op in self.operations:
            if op.method == method and op.pattern.fullmatch(path):
                return op
        return None

    def problems(self, method: str, path: str, body: typing.Any, status: int | None) -> list[str]:
        """What is wrong with one request (and the status it was answered), by the document."""
        op = self.operation(method, path)
        where = f"{method} {path}"
        if op is None:
            return [f"{where}: no such operation in the document"]
        found = []
        if body is None and op.body_required:
            found.append(f"{where} ({op.name}): the request body is required but missing")
        elif body is not None and op.body is not None:
            try:
                validate.validate(body, op.body, schemas=self.schemas)
            except validate.Invalid as ex:
                found.append(f"{where} ({op.name}): {ex}")
        elif body is not None and not op.other_types:
            found.append(f"{where} ({op.name}): sends a body the operation does not declare")
        if status is not None and str(status) not in op.statuses and "default" not in op.statuses:
            found.append(f"{where} ({op.name}): answered {status}, which the document does not declare")
        return found


def _operations(template: str, item: dict, schemas: dict) -> typing.Iterator[Operation]:
    pattern = re.compile("".join(r"[^/]+" if part.startswith("{") else re.escape(part)
                                 for part in re.split(r"(\{[^}]*\})", template)))
    for method, spec in item.items():
        if method not in ("get", "post", "put", "patch", "delete"):
            continue
        request = spec.get("requestBody") or {}
        content = request.get("content") or {}
        body = content.get(JSON, {}).get("schema")
        yield Operation(spec.get("operationId") or f"{method.upper()} {template}", method.upper(), template,
                        pattern, _flatten(_refs(body), schemas, 0) if body is not None else None,
                        bool(request.get("required")), tuple(t for t in content if t != JSON),
                        frozenset(str(code) for code in spec.get("responses", {})))


def _refs(node: typing.Any) -> typing.Any:
    """``{"$ref": "#/components/schemas/X"}`` -> ``{"$ref": "X"}``, everywhere."""
    if isinstance(node, list):
        return [_refs(item) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        ref = node["$ref"]
        if not isinstance(ref, str) or not ref.startswith(REF):
            raise ValueError(f"unsupported schema reference {ref!r}")
        return {**{k: _refs(v) for k, v in node.items() if k != "$ref"}, "$ref": ref[len(REF):]}
    return {key: _refs(value) for key, value in node.items()}


def _flatten(node: typing.Any, schemas: dict, depth: int) -> typing.Any:
    """``allOf`` merged into one object schema (required lists joined, properties
    united), in every nested schema; references left as they are."""
    if depth > _MAX_DEPTH or not isinstance(node, (dict, list)):
        return node
    if isinstance(node, list):
        return [_flatten(item, schemas, depth + 1) for item in node]
    flat = {key: _flatten(value, schemas, depth + 1) for key, value in node.items() if key != "allOf"}
    for part in node.get("allOf", []):
        part = _flatten(validate.resolve(part, schemas) if "$ref" in part else part, schemas, depth + 1)
        for key, value in part.items():
            if key == "required":
                flat["required"] = [*flat.get("required", []), *value]
            elif key == "properties":
                flat["properties"] = {**value, **flat.get("properties", {})}
            else:
                flat.setdefault(key, value)
    return flat
