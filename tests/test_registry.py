"""The command registry is keyed by (dialect, name): a Flamenco 3 command and a
2.x command may share a name; plug-ins declare the dialects they serve."""
import io

import pytest

import fworker.commands  # noqa: F401  (registers every built-in command)
from fworker import plugins
from fworker.commands import base, simple
from fworker.errors import DuplicateCommand, InvalidSettings, UnknownCommand


@pytest.fixture
def isolated_registry(monkeypatch):
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    monkeypatch.setattr(base, "_ORIGINS", dict(base._ORIGINS))


def test_a_command_without_dialects_serves_v2_only():
    assert base.Command.dialects == ("v2",)
    assert base.lookup("log_a_lot") is simple.LogALot
    assert base.lookup("log_a_lot", "v2") is simple.LogALot
    with pytest.raises(UnknownCommand, match=r"unknown command 'log_a_lot' \(v3\)"):
        base.lookup("log_a_lot", "v3")


def test_two_dialects_may_each_have_their_own_class_under_one_name(isolated_registry):
    @base.register
    class Hello2(base.Command):
        name = "registry_test_hello"

    @base.register
    class Hello3(base.Command):
        name = "registry_test_hello"
        dialects = ("v3",)

    assert base.lookup("registry_test_hello", "v2") is Hello2
    assert base.lookup("registry_test_hello", "v3") is Hello3
    assert base.registered("v3")["registry_test_hello"] is Hello3
    assert base.registered()[("v2", "registry_test_hello")] is Hello2
    assert base.origin("registry_test_hello", "v3").builtin is False


def test_one_class_may_serve_both_dialects(isolated_registry):
    @base.register
    class Both(base.Command):
        name = "registry_test_both"
        dialects = ("v2", "v3")

    assert base.lookup("registry_test_both") is base.lookup("registry_test_both", "v3") is Both


def test_a_taken_name_in_one_dialect_registers_nothing_of_the_newcomer(isolated_registry):
    @base.register
    class Mine(base.Command):
        name = "registry_test_taken"
        dialects = ("v3",)

    class Other(base.Command):
        name = "registry_test_taken"
        dialects = ("v2", "v3")

    with pytest.raises(DuplicateCommand, match=r"'registry_test_taken' is claimed by both .*\(dialect v3\)"):
        base.register(Other)
    assert "registry_test_taken" not in base.registered("v2")


@pytest.mark.parametrize("dialects, problem", [
    ("v3", "must be a non-empty tuple"), ((), "must be a non-empty tuple"),
    (("v4",), "unknown dialect"), (["v2"], "must be a non-empty tuple"),
])
def test_bad_dialects_are_refused_naming_them(isolated_registry, dialects, problem):
    class Bad(base.Command):
        name = "registry_test_bad"

    Bad.dialects = dialects
    with pytest.raises(TypeError, match=problem):
        base.register(Bad)
    assert "registry_test_bad" not in base.registered("v2")


def test_an_unhashable_name_from_a_manager_is_an_unknown_command():
    with pytest.raises(UnknownCommand):
        base.lookup(["echo"], "v3")


def test_list_commands_groups_commands_by_dialect(isolated_registry):
    @base.register
    class Only3(base.Command):
        name = "registry_test_only3"
        dialects = ("v3",)

    out = io.StringIO()
    plugins.list_commands(out)
    text = out.getvalue()
    v2, v3 = text.index("commands (v2):"), text.index("commands (v3):")
    assert v2 < text.index("  log_a_lot") < v3 < text.index("  registry_test_only3")


@pytest.mark.parametrize("name, settings, setting", [
    ("echo", {"message": None}, "message"),
    ("sleep", {"time_in_seconds": None}, "time_in_seconds"),
    ("blender_render", {"blender_cmd": "true", "filepath": None}, "filepath"),
])
def test_a_required_setting_given_as_null_is_missing(recorder, name, settings, setting):
    """JSON null is no value: validate refuses it as it refuses a missing setting
    (it used to pass as None, and the command failed later on something else)."""
    import logging

    cmd = base.lookup(name)(base.CommandContext(recorder, logging.getLogger("test." + name)))
    with pytest.raises(InvalidSettings) as err:
        cmd.validate(settings)
    assert (err.value.command, err.value.setting) == (name, setting)
    assert "is required" in str(err.value)
