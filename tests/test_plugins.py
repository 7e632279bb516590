"""Plug-in commands: entry-point discovery, broken plug-ins, task types, and
the example plug-in end to end.

The example plug-in (examples/fworker-hello-plugin) is pip-installed into the
test environment, editable and without build isolation (so it works offline),
by the session fixture ``hello_plugin`` when it is not importable yet; an
editable install is only seen by new interpreters, so the tests that use it
run the worker (or ``--list-commands``) as a separate process.  Broken
plug-ins are real, tiny distributions made in tmp_path (a ``*.dist-info``
folder with METADATA and entry_points.txt, and a module) on sys.path or
PYTHONPATH: importlib.metadata finds them exactly as it finds installed ones.
"""
import importlib.metadata
import importlib.util
import logging
import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import psutil
import pytest

from fworker import plugins
from fworker.commands import base, simple
from fworker.errors import ConfigError, UnknownCommand
from tests.support.jobs import echo, one_task_job
from tests.support.waiting import wait_until

EXAMPLE = pathlib.Path(__file__).resolve().parent.parent / "examples" / "fworker-hello-plugin"
HELLO_ENTRY_POINT = "fworker-hello-plugin 0.1.0 (entry point hello = fworker_hello:Hello)"


@pytest.fixture(scope="session")
def hello_plugin():
    """The example plug-in, installed in this environment (once)."""
    if importlib.util.find_spec("fworker_hello") is None:
        done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                               "-e", str(EXAMPLE)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.fail(f"installing the example plug-in failed:\n{done.stdout}\n{done.stderr}")
        importlib.invalidate_caches()
    return importlib.metadata.distribution("fworker-hello-plugin")


def make_distribution(site, name, version, entry_points, modules):
    """A minimal installed distribution in folder ``site``: its metadata, its
    entry points ({group: {name: value}}) and its modules ({name: source})."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    sections = [f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) for group, eps in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(sections))
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))


COMMANDS, TASK_TYPES = plugins.COMMANDS_GROUP, plugins.TASK_TYPES_GROUP


@pytest.fixture
def broken_plugins(tmp_path):
    """A folder of plug-in distributions: three broken in different ways and
    one good one, each declaring a task type."""
    site = tmp_path / "site"
    make_distribution(site, "broken-import", "1.0",
                      {COMMANDS: {"explode": "fworker_test_explode:Explode"},
                       TASK_TYPES: {"explode-render": "explode"}},
                      {"fworker_test_explode": "import fworker_test_no_such_dependency\n"})
    make_distribution(site, "dup-plugin", "2.0", {COMMANDS: {"echo": "fworker_test_dup:Echo"}}, {"fworker_test_dup": """
        import fworker

        class Echo(fworker.Command):
            name = "echo"

            def execute(self, settings):
                self.ctx.log("the wrong echo")
        """})
    make_distribution(site, "wrong-type", "3.0",
                      {COMMANDS: {"frob": "fworker_test_wrong:Frob", "misnamed": "fworker_test_wrong:Other"},
                       TASK_TYPES: {"frob-type": "frob"}},
                      {"fworker_test_wrong": """
        import fworker

        class Frob:
            name = "frob"

        class Other(fworker.Command):
            name = "other"

            def execute(self, settings):
                pass
        """})
    make_distribution(site, "good-plugin", "4.0",
                      {COMMANDS: {"shout": "fworker_test_good:Shout"}, TASK_TYPES: {"shouting": "shout"}},
                      {"fworker_test_good": """
        import fworker

        class Shout(fworker.Command):
            name = "shout"

            def validate(self, settings):
                return {"text": self.require_str(settings, "text")}

            def execute(self, settings):
                self.ctx.log(settings["text"].upper())
        """})
    yield site
    # The next test makes these modules anew, in its own tmp_path.
    for name in [m for m in sys.modules if m.startswith("fworker_test_")]:
        del sys.modules[name]


@pytest.fixture
def isolated_registry(monkeypatch):
    """Commands registered by the test are forgotten after it."""
    import fworker.commands  # noqa: F401  (the built-ins, registered for good)

    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    monkeypatch.setattr(base, "_ORIGINS", dict(base._ORIGINS))


def list_commands(env=None):
    done = subprocess.run([sys.executable, "-m", "fworker", "--list-commands"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def with_pythonpath(site):
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))


def gone(pid):
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow
def test_list_commands_shows_plugins_with_their_distribution(hello_plugin):
    rows = {line.split()[0]: " ".join(line.split()[1:]) for line in list_commands().splitlines()
            if line.startswith("  ") and ":" not in line.split()[0]}
    assert rows["hello"] == HELLO_ENTRY_POINT
    assert rows["echo"] == rows["blender_render"] == "built-in"
    assert "hello-world: needs command 'hello' from fworker-hello-plugin 0.1.0: available" in list_commands()


def test_list_commands_names_the_plugins_it_left_out(broken_plugins):
    out = list_commands(with_pythonpath(broken_plugins))
    assert "shout" in out and "good-plugin 4.0 (entry point shout = fworker_test_good:Shout)" in out
    left_out = out.split("plug-ins not loaded:\n", 1)[1]
    assert "broken-import 1.0 (entry point explode = fworker_test_explode:Explode): cannot be imported" in left_out
    assert "dup-plugin 2.0 (entry point echo = fworker_test_dup:Echo)" in left_out
    assert "explode-render: not advertised: it needs command 'explode' from broken-import 1.0" in out


def test_broken_plugins_are_left_out_with_a_warning_each(broken_plugins, isolated_registry, monkeypatch, caplog):
    monkeypatch.syspath_prepend(str(broken_plugins))
    with caplog.at_level(logging.WARNING, logger="fworker.plugins"):
        report = plugins.load()
    assert report.loaded["shout"] == base.Origin("fworker_test_good", "good-plugin", "4.0",
                                                 "shout = fworker_test_good:Shout")
    problems = {p.origin.entry_point.split(" = ")[0]: p for p in report.problems}
    assert "cannot be imported: ModuleNotFoundError" in problems["explode"].message
    assert "'echo' is already taken (built-in)" in problems["echo"].message
    assert "not a subclass of fworker.Command" in problems["frob"].message
    assert "name = 'other', but the entry point is named 'misnamed'" in problems["misnamed"].message
    warnings = caplog.text
    for text in ("broken-import 1.0 (entry point explode = fworker_test_explode:Explode)",
                 "dup-plugin 2.0 (entry point echo = fworker_test_dup:Echo)",
                 "wrong-type 3.0 (entry point frob = fworker_test_wrong:Frob)",
                 "wrong-type 3.0 (entry point misnamed = fworker_test_wrong:Other)"):
        assert text in warnings
    # The worker keeps its own echo; nothing of the broken plug-ins is registered.
    assert base.lookup("echo") is simple.Echo and base.origin("echo").builtin
    assert base.lookup("shout").__module__ == "fworker_test_good"
    for name in ("explode", "frob", "misnamed", "other"):
        with pytest.raises(UnknownCommand):
            base.lookup(name)


def test_task_types_of_plugins_that_did_not_load_are_not_advertised(broken_plugins, isolated_registry,
                                                                     monkeypatch, caplog):
    monkeypatch.syspath_prepend(str(broken_plugins))
    report = plugins.load()
    assert {"explode-render", "frob-type"} <= report.unavailable_task_types
    assert "shouting" not in report.unavailable_task_types
    assert "did not load" in report.unavailable["explode-render"]
    with caplog.at_level(logging.WARNING, logger="fworker.plugins"):
        usable = report.usable_task_types(["debug", "explode-render", "shouting", "frob-type"])
    assert usable == ["debug", "shouting"]
    assert "not advertising task type 'explode-render'" in caplog.text
    with pytest.raises(ConfigError, match="none of the configured task_types can be served"):
        report.usable_task_types(["explode-render"])


def test_a_declared_task_type_whose_command_name_belongs_to_someone_else_is_unavailable(tmp_path, isolated_registry,
                                                                                       monkeypatch):
    # "echo" exists, but it is the built-in one: tasks of this type would run the wrong code.
    make_distribution(tmp_path, "squatter", "1.0", {TASK_TYPES: {"squat": "echo"}}, {})
    monkeypatch.syspath_prepend(str(tmp_path))
    report = plugins.load()
    assert report.unavailable["squat"] == "it needs command 'echo' from squatter 1.0, but that name belongs to built-in"


def test_loading_twice_keeps_plugins_registered(broken_plugins, isolated_registry, monkeypatch):
    monkeypatch.syspath_prepend(str(broken_plugins))
    first = plugins.load(log_problems=False)
    second = plugins.load(log_problems=False)
    assert first.loaded == second.loaded and "shout" in second.loaded
    assert [str(p) for p in second.problems] == [str(p) for p in first.problems]
    assert base.origin("shout").distribution == "good-plugin"


@pytest.mark.slow
def test_a_worker_with_broken_plugins_starts_warns_and_works(broken_plugins, manager, worker_process, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", with_pythonpath(broken_plugins)["PYTHONPATH"])
    task_id = manager.submit_job(one_task_job({"name": "shout", "settings": {"text": "plug-ins work"}},
                                              echo("and echo is ours"), task_type="shouting"))["task_ids"][0]
    w = worker_process(manager.url, {"task_types": "debug explode-render shouting frob-type"})
    wait_until(lambda: manager.task(task_id)["status"] == "completed", timeout=30)
    log = manager.task_log(task_id)
    assert "PLUG-INS WORK" in log and "and echo is ours" in log and "the wrong echo" not in log
    assert manager.workers()[0]["supported_task_types"] == ["debug", "shouting"]
    for text in ("broken-import 1.0 (entry point explode = fworker_test_explode:Explode) not loaded",
                 "dup-plugin 2.0 (entry point echo = fworker_test_dup:Echo) not loaded",
                 "not advertising task type 'explode-render'", "not advertising task type 'frob-type'"):
        assert text in w.output
    w.send(signal.SIGTERM)
    assert w.wait() == 0


@pytest.mark.slow
def test_the_example_plugin_runs_a_task_end_to_end(hello_plugin, manager, worker_process):
    hello = {"name": "hello", "settings": {"who": "render farm"}}
    task_id = manager.submit_job(one_task_job(hello, task_type="hello-world"))["task_ids"][0]
    w = worker_process(manager.url, {"task_types": "debug hello-world"})
    wait_until(lambda: manager.task(task_id)["status"] == "completed", timeout=30)
    log = manager.task_log(task_id)
    # The greeting, then the child's (run through ctx.run_process, its output in the task log).
    assert log.index("hello, render farm!") < log.index("hello from child process")
    assert "to render farm" in log.split("hello from child process", 1)[1]
    assert "starting hello" in [u.get("activity") for u in manager.task_updates(task_id)]
    assert manager.workers()[0]["supported_task_types"] == ["debug", "hello-world"]
    w.send(signal.SIGTERM)
    assert w.wait() == 0


@pytest.mark.slow
def test_cancelling_a_plugin_task_kills_its_child(hello_plugin, manager, worker_process):
    ids = manager.submit_job(one_task_job({"name": "hello", "settings": {"child_seconds": 600}},
                                          task_type="hello-world"))
    task_id = ids["task_ids"][0]
    w = worker_process(manager.url, {"task_types": "hello-world debug"})
    log = wait_until(lambda: "hello from child process" in manager.task_log(task_id)
                           and manager.task_log(task_id), timeout=30)
    child = int(log.split("hello from child process", 1)[1].split()[0])
    assert child in [p.pid for p in psutil.Process(w.proc.pid).children(recursive=True)]
    assert manager.cancel_task(task_id) == "cancel-requested"
    wait_until(lambda: manager.task(task_id)["status"] == "canceled", timeout=30)
    wait_until(lambda: gone(child), timeout=10, what="the plug-in's child gone")
    # Like after any cancel, the worker goes on with the next task.
    next_id = manager.submit_job(one_task_job(echo("next")))["task_ids"][0]
    wait_until(lambda: manager.task(next_id)["status"] == "completed", timeout=30)
    w.send(signal.SIGTERM)
    assert w.wait() == 0
