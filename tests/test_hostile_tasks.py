"""Tasks a hostile or buggy Manager hands out (issue 15): a task of a type this
worker never announced is failed with a clear activity before any command runs,
in test mode too (case 7).  In-process workers against the development Manager,
the task rewritten by the fault proxy on its way to the worker."""
import pytest

from fworker import config, statefiles, task as tasks, wiring
from fworker.errors import InvalidSettings
from fworker.runner import Outcome
from tests.support.faults import FaultProxy
from tests.support.jobs import echo, submit
from tests.support.workers import build_worker


@pytest.fixture
def proxy(manager):
    p = FaultProxy(manager.url).up()
    yield p
    p.down()


def started(tmp_path, url, *, test_mode=False, **settings):
    root = tmp_path / "w"
    root.mkdir()
    if test_mode:
        overrides = {"manager_url": url, "task_update_queue_db": str(root / "queue.sqlite"), **settings}
        worker = wiring.build_worker(config.load(files=[], overrides=overrides),
                                     credentials_path=str(root / "credentials.cfg"), test_mode=True)
    else:
        worker = build_worker(root, url, **settings)
    worker.start()
    return worker


def one_task(worker):
    try:
        while worker.last_outcome is None:
            worker.run_once()
        return worker.last_outcome
    finally:
        worker.request_shutdown("end of test")
        worker.shutdown()


@pytest.mark.parametrize("test_mode", [False, True], ids=["awake", "test-mode"])
def test_a_task_of_a_type_not_announced_fails_without_running(manager, proxy, tmp_path, test_mode):
    handed_type = "test-blender-render" if test_mode else "debug"
    _, task_id = submit(manager, echo("must not run"), task_type=handed_type)
    # "debug" is among the configured types, but a test-mode worker announces only its own.
    forged = "debug" if test_mode else "mine-craft"
    proxy.rewrite("POST", r"^/task$", lambda t: dict(t, task_type=forged))
    worker = started(tmp_path, proxy.url, test_mode=test_mode, task_types="debug sleep")
    assert one_task(worker) is Outcome.FAILED
    view = manager.task(task_id)
    assert view["status"] == "failed"
    assert f"task type '{forged}' is not one this worker announced" in view["activity"]
    assert "must not run" not in manager.task_log(task_id)


def test_unannounced_type_names_the_type_and_what_was_announced():
    task = tasks.parse_task({"_id": "a" * 24, "task_type": "x\ny", "commands": []})
    assert tasks.unannounced_type(task, ["debug", "sleep"]) == (
        "task type 'x\\ny' is not one this worker announced (debug sleep); refusing to run it")
    untyped = tasks.parse_task({"_id": "b" * 24, "commands": []})
    assert tasks.unannounced_type(untyped, ["debug"]) == (
        "task type none is not one this worker announced (debug); refusing to run it")
    assert tasks.unannounced_type(tasks.parse_task({"_id": "c" * 24, "task_type": "debug"}), ["debug"]) is None


# --- Case 11e: a task cannot touch the worker's own state -------------------------------


@pytest.fixture
def state(tmp_path, monkeypatch):
    """Settings whose queue is in tmp_path/state, HOME in tmp_path/home (credentials)."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    (tmp_path / "state").mkdir()
    queue = tmp_path / "state" / "queue.sqlite"
    queue.write_bytes(b"queue")
    credentials = tmp_path / "home" / ".flamenco-worker.cfg"
    credentials.write_text("[flamenco-worker]\n")
    (tmp_path / "link").symlink_to(tmp_path / "state")
    return config.load(files=[], overrides={"task_update_queue_db": str(queue)}), queue, credentials


@pytest.mark.parametrize("name, settings_of, setting", [
    ("remove_file", lambda q, c, t: {"path": str(q)}, "path"),
    ("remove_file", lambda q, c, t: {"path": str(q) + "-wal"}, "path"),
    ("remove_tree", lambda q, c, t: {"path": str(t / "state")}, "path"),
    ("remove_tree", lambda q, c, t: {"path": str(t / "link") + "/"}, "path"),
    ("move_out_of_way", lambda q, c, t: {"src": str(c)}, "src"),
    ("copy_file", lambda q, c, t: {"src": str(t / "home" / ".flamenco-worker.cfg"), "dest": str(t / "x")}, "src"),
    ("copy_file", lambda q, c, t: {"src": str(t / "x"), "dest": str(q)}, "dest"),
    ("move_to_final", lambda q, c, t: {"src": str(t / "x"), "dest": str(t / "state" / "..") + "/state"}, "dest"),
    ("create_python_file", lambda q, c, t: {"filepath": str(q) + ".lock.py", "contents": ""}, None),
])
def test_file_commands_refuse_the_workers_own_state(run_command, state, tmp_path, name, settings_of, setting):
    settings, queue, credentials = state
    (tmp_path / "x").write_text("x")
    given = settings_of(queue, credentials, tmp_path)
    if setting is None:  # not state (the lock is queue.sqlite.lock): allowed
        run_command(name, given, settings)
        return
    with pytest.raises(InvalidSettings) as err:
        run_command(name, given, settings)
    assert err.value.setting == setting and "this worker's own" in str(err.value)
    assert queue.read_bytes() == b"queue" and credentials.exists() and (tmp_path / "x").exists()


@pytest.mark.parametrize("name, settings_of", [
    ("copy-file", lambda q, t: {"src": str(q), "dest": str(t / "stolen")}),
    ("move-directory", lambda q, t: {"src": str(t / "state"), "dest": str(t / "moved")}),
])
def test_flamenco_3_file_commands_refuse_it_too(run_command, state, tmp_path, name, settings_of):
    settings, queue, _ = state
    with pytest.raises(InvalidSettings, match="this worker's own update queue"):
        run_command(name, settings_of(queue, tmp_path), settings, dialect="v3")
    assert queue.read_bytes() == b"queue" and not (tmp_path / "stolen").exists()


def test_state_files_say_what_a_path_holds(state, tmp_path):
    settings, queue, credentials = state
    files = statefiles.StateFiles.of(settings)
    assert files.owns(str(queue)) == f"update queue {queue}"
    assert files.owns(str(tmp_path / "state")) == f"update queue {queue}"
    assert files.owns(str(credentials)).startswith("credentials (Manager 2.x)")
    assert files.owns(str(queue) + ".lock") == f"lock {queue}.lock"
    assert files.owns(str(tmp_path / "state" / "renders")) is None
    assert files.owns(str(tmp_path / "x")) is None
