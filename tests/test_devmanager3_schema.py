"""The project's own description of the Flamenco 3 worker API (devmanager/v3/schema.py)
and the validator of its JSON Schema subset: every rule, refusing with the field named."""
import pytest

from fworker.devmanager.v3 import schema, validate
from fworker.devmanager.v3.validate import Invalid


def refusal(value, schema_, schemas=None):
    with pytest.raises(Invalid) as caught:
        validate.validate(value, schema_, schemas=schemas)
    return caught.value


# Every rule

@pytest.mark.parametrize("kind,good,bad", [
    ("object", {}, []),
    ("array", [], {}),
    ("string", "", 5),
    ("integer", 3, 3.0),
    ("integer", -7, True),
    ("integer", 0, "0"),
    ("number", 2.5, "2.5"),
    ("number", 2, False),
    ("boolean", False, 0),
])
def test_type(kind, good, bad):
    validate.validate(good, {"type": kind})
    assert "expected" in str(refusal(bad, {"type": kind}))


def test_null_is_refused_unless_nullable():
    assert str(refusal(None, {"type": "string"})) == "must not be null"
    validate.validate(None, {"type": "string", "nullable": True})


def test_enum():
    validate.validate("awake", "WorkerStatus")
    error = refusal("sleeping", "WorkerStatus")
    assert "'sleeping' is not one of starting, awake" in str(error)


def test_required_names_the_missing_field():
    error = refusal({"name": "w", "supported_task_types": []}, "WorkerSignOn")
    assert error.field == "software_version"
    assert str(error) == "software_version: required but missing"


def test_properties_are_checked_and_undeclared_ones_ignored():
    body = {"name": "w", "supported_task_types": ["misc"], "software_version": "1",
            "can_restart": True, "nickname": 5, "anything": None}
    validate.validate(body, "WorkerSignOn")
    error = refusal(dict(body, can_restart="yes"), "WorkerSignOn")
    assert error.field == "can_restart" and "boolean" in error.problem


def test_items_name_the_index():
    error = refusal({"secret": "s", "platform": "linux", "name": "w",
                     "supported_task_types": ["misc", 7]}, "WorkerRegistration")
    assert str(error) == "supported_task_types[1]: expected a string, got an integer"


def test_nested_paths_through_refs():
    task = {"uuid": "u", "job": "j", "name": "n", "status": "active", "priority": 1,
            "job_priority": 1, "job_type": "t", "task_type": "misc", "steps_completed": 0,
            "steps_total": 1, "commands": [{"name": "echo", "parameters": {}}]}
    error = refusal(task, "AssignedTask")
    assert error.field == "commands[0].total_step_count"


@pytest.mark.parametrize("fmt,inside,outside", [
    ("int32", 2**31 - 1, 2**31), ("int32", -(2**31), -(2**31) - 1),
    ("int64", 2**63 - 1, 2**63), (None, -(2**63), -(2**63) - 1),
])
def test_integer_formats_bound_the_value(fmt, inside, outside):
    rule = {"type": "integer", **({"format": fmt} if fmt else {})}
    validate.validate(inside, rule)
    assert "out of range" in str(refusal(outside, rule))


def test_binary_format_takes_bytes_only():
    validate.validate(b"\x89PNG", "Image")
    assert "binary" in str(refusal("text", "Image"))


def test_ref_to_unknown_schema_is_a_bug_not_a_refusal():
    with pytest.raises(KeyError):
        validate.validate(1, {"$ref": "Nope"})
    with pytest.raises(KeyError):
        validate.validate(1, {"$ref": "A"}, schemas={"A": {"$ref": "A"}})


# Bodies as the Manager reads them

def test_parse_json_refuses_empty_malformed_non_utf8_and_nan():
    for raw, words in [(b"", "required but missing"), (b"  ", "required but missing"),
                       (b"{", "not valid JSON"), (b"\xff{}", "not UTF-8"),
                       (b'{"a": NaN}', "NaN")]:
        with pytest.raises(Invalid) as caught:
            validate.parse_json(raw)
        assert words in str(caught.value), raw


def test_check_body_content_type_rules():
    op = schema.OPERATIONS["workerStateChanged"]
    assert validate.check_body(op, "application/json; charset=utf-8", b'{"status": "awake"}') \
        == {"status": "awake"}
    for content_type in ("", "text/plain", "application/x-www-form-urlencoded"):
        with pytest.raises(Invalid) as caught:
            validate.check_body(op, content_type, b'{"status": "awake"}')
        assert caught.value.field == "Content-Type"


def test_check_body_of_operations_without_one_reads_nothing():
    assert validate.check_body(schema.OPERATIONS["signOff"], "", b"garbage") is None


def test_check_body_image():
    op = schema.OPERATIONS["taskOutputProduced"]
    assert validate.check_body(op, "image/png", b"\x89PNG") == b"\x89PNG"
    with pytest.raises(Invalid):
        validate.check_body(op, "image/gif", b"GIF89a")
    with pytest.raises(Invalid):
        validate.check_body(op, "image/jpeg", b"")


# The description itself

def test_every_reference_resolves():
    def refs(node):
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)
    names = set(refs(schema.SCHEMAS)) | {op["body"] for op in schema.OPERATIONS.values()
                                         if "body" in op}
    names |= {name for answers in schema.RESPONSES.values() for name in answers.values() if name}
    assert names <= set(schema.SCHEMAS)
    assert set(schema.RESPONSES) == set(schema.OPERATIONS)


def test_every_body_operation_declares_its_types():
    for name, op in schema.OPERATIONS.items():
        assert ("body" in op) == ("types" in op), name
        assert op["path"].startswith("/api/v3/"), name


def test_statuses_match_the_document():
    assert schema.WORKER_STATUSES == ["starting", "awake", "asleep", "error", "testing",
                                      "offline", "restart"]
    assert "soft-failed" in schema.TASK_STATUSES and "cancel-requested" not in schema.TASK_STATUSES
