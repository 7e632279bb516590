"""One way to build a Worker (fworker.wiring), for the command line, the API
and the demo; overrides make a new Settings value and never change the caller's."""
import ast
import pathlib

import pytest

from fworker import config, wiring
from fworker.edge import detect

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "fworker"


@pytest.fixture
def settings(tmp_path):
    return config.load(files=[], overrides={"manager_url": "http://127.0.0.1:9/", "task_types": "debug sleep",
                                            "task_update_queue_db": str(tmp_path / "q.sqlite")})


def built(settings, **options):
    worker = wiring.build_worker(settings, credentials_path=None, **options)
    worker.queue.close()
    return worker


def announced_to_v2(worker):
    return detect.make_edge("v2", worker.upstream, worker.settings, None).task_types()


def test_test_mode_announces_only_test_renders_on_a_new_value(settings):
    worker = built(settings, test_mode=True, single=True)
    assert worker.settings.task_types == wiring.TEST_TASK_TYPES == ("test-blender-render",)
    assert worker.settings.sources["task_types"] == "override"
    # manager_protocol = auto: no edge before start(); a 2.x one would announce these.
    assert announced_to_v2(worker) == ["test-blender-render"]
    assert (worker.test_mode, worker.single) == (True, True)
    assert settings.task_types == ("debug", "sleep"), "the caller's settings are unchanged"


def test_a_normal_worker_keeps_the_configured_task_types_and_manager(settings):
    worker = built(settings)
    assert worker.settings.task_types == ("debug", "sleep") and not worker.test_mode
    assert worker.settings.manager_url == "http://127.0.0.1:9/"


def test_without_a_manager_url_the_manager_is_discovered_first(settings, monkeypatch):
    # SSDP needs a Manager answering on the local network: the search itself
    # is tested in test_discovery; here only that the wiring asks for it.
    asked = []
    monkeypatch.setattr(wiring.discovery, "discover",
                        lambda timeout, accept: asked.append(timeout) or "http://found:8080/")
    unset = settings.replace(manager_url="", discovery_timeout=0.5)
    worker = built(unset)
    assert asked == [0.5]
    assert worker.settings.manager_url == "http://found:8080/" and unset.manager_url == ""


def test_only_the_wiring_builds_workers():
    builders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "Worker":
                builders.append(path.relative_to(PACKAGE).as_posix())
    assert builders == ["wiring.py"]


@pytest.mark.parametrize("protocol, v3_types", [
    ("auto", ("file-management", "misc")),
    ("v3", ("file-management", "misc")),
    ("v2", None),
])
def test_flamenco_3s_default_task_types_are_filtered_by_the_tools_too(tmp_path, protocol, v3_types):
    missing = str(tmp_path / "nope")
    s = config.load(files=[], overrides={"manager_url": "http://127.0.0.1:9/", "manager_protocol": protocol,
                                         "blender_exe": missing, "ffmpeg_exe": missing,
                                         "task_update_queue_db": str(tmp_path / "q.sqlite")})
    capable = wiring.capabilities(s)
    two, three = wiring.announced(s, capable)
    assert two == ("sleep", "file-management", "debug")
    assert three == v3_types
    worker = built(s, capable=capable)
    assert worker.v3_task_types == v3_types and worker.settings.task_types == two
    if v3_types is not None:
        assert "blender" in capable.dropped and "ffmpeg" in capable.dropped
