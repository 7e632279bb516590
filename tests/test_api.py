"""The public embedding API (docs/API.md): its surface, settings, and a worker
running in a greenlet of the test process against the in-process Manager."""
import ast
import inspect
import logging
import pathlib
import subprocess
import sys

import pytest

import fworker
from fworker.commands import base
from fworker.errors import DuplicateCommand, RegistrationRefused
from tests.support.jobs import one_task_job
from tests.support.waiting import wait_until
from tests.support.workers import FAST

ROOT = pathlib.Path(__file__).resolve().parent.parent

# The public API and its signatures.  A change here is a change of the API:
# update docs/API.md with it, on purpose.
PUBLIC = {
    "__version__", "load_settings", "start_worker", "WorkerHandle", "register_command", "Settings", "EVENTS",
    "Command", "CommandContext", "CommandFailed", "InvalidSettings", "ConfigError",
}
SIGNATURES = {
    "load_settings": "(files: 'typing.Iterable[str | os.PathLike[str]]' = (), **overrides: 'typing.Any') "
                     "-> 'config.Settings'",
    "start_worker": "(settings: 'config.Settings', *, credentials_path: 'str | os.PathLike[str] | None' = None, "
                    "single: 'bool' = False) -> 'WorkerHandle'",
    "register_command": "(cls: 'CommandClass') -> 'CommandClass'",
    "WorkerHandle.subscribe": "(self, event: 'str', callback: 'Callback') -> 'None'",
    "WorkerHandle.unsubscribe": "(self, callback: 'Callback') -> 'None'",
    "WorkerHandle.stop": "(self, timeout: 'float | None' = None) -> 'bool'",
    "WorkerHandle.wait": "(self, timeout: 'float | None' = None) -> 'int | None'",
    "Command.validate": "(self, settings: 'CommandSettings') -> 'CommandSettings'",
    "Command.execute": "(self, settings: 'CommandSettings') -> 'None'",
    "Command.require_str": "(self, settings: 'CommandSettings', key: 'str', *, allow_empty: 'bool' = False) -> 'str'",
    "Command.optional_str": "(self, settings: 'CommandSettings', key: 'str', default: 'str | None', *, "
                            "allow_empty: 'bool' = True) -> 'str | None'",
    "Command.require_number": "(self, settings: 'CommandSettings', key: 'str', *, "
                              "minimum: 'float | None' = None) -> 'float'",
    "Command.optional_number": "(self, settings: 'CommandSettings', key: 'str', default: 'float | None', *, "
                               "minimum: 'float | None' = None) -> 'float | None'",
    "Command.require_int": "(self, settings: 'CommandSettings', key: 'str', *, minimum: 'int | None' = None) -> 'int'",
    "Command.optional_int": "(self, settings: 'CommandSettings', key: 'str', default: 'int | None', *, "
                            "minimum: 'int | None' = None) -> 'int | None'",
    "Command.require_cmdline": "(self, settings: 'CommandSettings', key: 'str', "
                               "default: 'str | None' = None) -> 'list[str]'",
    "CommandContext.log": "(self, line: 'str', at: 'float | None' = None) -> 'None'",
    "CommandContext.log_lines": "(self, lines: 'list[str]', at: 'float | None' = None) -> 'None'",
    "CommandContext.activity": "(self, text: 'str') -> 'None'",
    "CommandContext.progress": "(self, percent: 'float') -> 'None'",
    "CommandContext.output_produced": "(self, *paths: 'str') -> 'None'",
    "CommandContext.timing": "(self, phase: 'str', seconds: 'float') -> 'None'",
    "CommandContext.blocking": "(self, fn: 'typing.Callable[[*_Ts], _T]', *args: '*_Ts') -> '_T'",
    "CommandContext.sleep": "(self, seconds: 'float') -> 'None'",
    "CommandContext.run_process": "(self, args: 'list[str]', *, on_line: 'typing.Callable[[str], None] | None' = None, "
                                  "cwd: 'str | None' = None, env: 'dict[str, str] | None' = None, "
                                  "log_lines: 'bool' = True, output_timeout: 'float | None' = None) -> 'int'",
}
HANDLE_MEMBERS = {"subscribe", "unsubscribe", "stop", "wait", "running", "state", "worker_id"}
EVENT_NAMES = ("state_changed", "task_started", "command_started", "command_finished", "task_finished",
               "update_delivered")


def test_the_public_surface_is_deliberate():
    assert set(fworker.__all__) == PUBLIC
    assert all(getattr(fworker, name) is not None for name in PUBLIC)
    found = {}
    for dotted in SIGNATURES:
        obj = fworker
        for part in dotted.split("."):
            obj = getattr(obj, part)
        found[dotted] = str(inspect.signature(obj))
    assert found == SIGNATURES
    assert {n for n in dir(fworker.WorkerHandle) if not n.startswith("_")} == HANDLE_MEMBERS
    assert fworker.EVENTS == EVENT_NAMES
    for name in PUBLIC - {"__version__", "EVENTS"}:
        assert inspect.getdoc(getattr(fworker, name)), f"fworker.{name} has no docstring"


def test_a_command_reads_the_workers_settings_or_else_the_defaults(recorder):
    own = fworker.load_settings(abort_grace_period=2.5)
    assert fworker.CommandContext(recorder, logging.getLogger("t"), own).settings.abort_grace_period == 2.5
    standalone = fworker.CommandContext(recorder, logging.getLogger("t")).settings
    assert isinstance(standalone, fworker.Settings)
    assert standalone.abort_grace_period == 10.0 and standalone.task_log_max_bytes == 256 * 1024 * 1024


def test_import_fworker_patches_first_and_stays_cheap():
    tree = ast.parse((ROOT / "fworker" / "__init__.py").read_text())
    first, second = tree.body[1], tree.body[2]  # after the docstring
    assert isinstance(first, ast.ImportFrom) and first.module == "gevent" and first.names[0].name == "monkey"
    assert ast.unparse(second) == "_monkey.patch_all()"
    code = ("import sys, fworker\n"
            "from gevent import monkey\n"
            "heavy = ['fworker.api', 'fworker.worker', 'fworker.config', 'fworker.commands', 'requests']\n"
            "print(monkey.is_module_patched('socket'), [m for m in heavy if m in sys.modules])\n"
            "fworker.start_worker\n"
            "print('fworker.api' in sys.modules, 'fworker.worker' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["True []", "True False"]
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        fworker.nonsense  # noqa: B018  (the look-up is the test)


def test_load_settings_from_files_and_overrides(tmp_path):
    cfg = tmp_path / "worker.cfg"
    cfg.write_text("[flamenco-worker]\nnickname = from-file\nhttp_timeout = 9\n")
    settings = fworker.load_settings([cfg], http_timeout=3, job_types="debug sleep", fetch_task_interval="0.5")
    assert (settings.nickname, settings.http_timeout, settings.task_types) == ("from-file", 3.0, ("debug", "sleep"))
    assert settings.fetch_task_interval == 0.5
    assert settings.sources["nickname"] == str(cfg) and settings.sources["http_timeout"] == "override"
    assert isinstance(settings, fworker.Settings)
    with pytest.raises(fworker.ConfigError, match=r"unknown setting.*no_such_thing"):
        fworker.load_settings(no_such_thing=1)
    with pytest.raises(fworker.ConfigError, match="not found"):
        fworker.load_settings([tmp_path / "missing.cfg"])
    with pytest.raises(fworker.ConfigError, match="http_timeout"):
        fworker.load_settings(http_timeout="soon")


@pytest.fixture
def isolated_registry(monkeypatch):
    import fworker.commands  # noqa: F401  (the built-ins, registered for good)

    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    monkeypatch.setattr(base, "_ORIGINS", dict(base._ORIGINS))


class Tally(fworker.Command):
    """Registered in code by the embedding program; uses the thread pool."""

    name = "api_test_tally"

    def validate(self, settings):
        return {"n": self.require_int(settings, "n", minimum=0)}

    def execute(self, settings):
        self.ctx.log(f"tally {self.ctx.blocking(sum, range(settings['n']))}")


def test_register_command(isolated_registry):
    assert fworker.register_command(Tally) is Tally
    assert fworker.register_command(Tally) is Tally  # again: harmless
    assert base.lookup("api_test_tally") is Tally
    assert base.origin("api_test_tally").describe() == f"registered by {__name__}"
    with pytest.raises(TypeError, match="not a subclass"):
        fworker.register_command(object)

    class OtherEcho(fworker.Command):
        name = "echo"

    with pytest.raises(DuplicateCommand, match="'echo' is claimed by both"):
        fworker.register_command(OtherEcho)


def embedded_settings(manager, tmp_path, **more):
    return fworker.load_settings(**FAST, manager_url=manager.url, task_update_queue_db=str(tmp_path / "queue.sqlite"),
                                 nickname="embedded", task_types="debug", **more)


def test_an_embedded_worker_runs_a_task_and_reports_every_event_in_order(manager, tmp_path, isolated_registry,
                                                                          caplog):
    fworker.register_command(Tally)
    task_id = manager.submit_job(one_task_job({"name": "echo", "settings": {"message": "embedded hello"}},
                                              {"name": "api_test_tally", "settings": {"n": 10}}))["task_ids"][0]
    handle = fworker.start_worker(embedded_settings(manager, tmp_path), single=True)
    calls, events = [], []

    def broken(event, **data):
        calls.append(event)
        raise RuntimeError("a bug in the embedding program")

    handle.subscribe("*", broken)  # first, so it runs before the recorder every time
    handle.subscribe("*", lambda event, **data: events.append((event, data)))
    assert handle.wait(timeout=30) == 0
    assert manager.task(task_id)["status"] == "completed"
    assert manager.task_log(task_id).index("embedded hello") < manager.task_log(task_id).index("tally 45")
    main = [(e, d) for e, d in events if e != "update_delivered"]
    assert main == [
        ("state_changed", {"old": "starting", "new": "awake"}),
        ("task_started", {"task_id": task_id, "name": "t0"}),
        ("command_started", {"task_id": task_id, "index": 0, "name": "echo"}),
        ("command_finished", {"task_id": task_id, "index": 0, "name": "echo"}),
        ("command_started", {"task_id": task_id, "index": 1, "name": "api_test_tally"}),
        ("command_finished", {"task_id": task_id, "index": 1, "name": "api_test_tally"}),
        ("task_finished", {"task_id": task_id, "outcome": "completed"}),
        ("state_changed", {"old": "awake", "new": "shutdown"}),
    ]
    delivered = [i for i, (e, d) in enumerate(events) if e == "update_delivered"]
    assert delivered and delivered[0] > events.index(main[1])
    assert all(events[i][1]["task_id"] == task_id and events[i][1]["count"] >= 1 for i in delivered)
    assert len(delivered) == len(manager.task_updates(task_id))  # one event per accepted request
    # The raising subscriber saw every event and broke nothing; each failure was logged.
    assert calls == [e for e, _ in events]
    failures = [r for r in caplog.records
                if r.name == "fworker.events" and r.exc_info and r.exc_info[0] is RuntimeError]
    assert len(failures) == len(calls)
    assert not handle.running and handle.state == "shutdown"
    assert handle.worker_id == manager.workers()[0]["id"]
    assert ("POST", "/sign-off", 204) in manager.requests_log


def test_stop_ends_a_running_task_and_signs_off(manager, tmp_path):
    task_id = manager.submit_job(one_task_job({"name": "sleep", "settings": {"time_in_seconds": 600}}))["task_ids"][0]
    handle = fworker.start_worker(embedded_settings(manager, tmp_path))
    started = []
    handle.subscribe("command_started", lambda event, **data: started.append(data["name"]))
    wait_until(lambda: started == ["sleep"], timeout=30)
    assert handle.running and handle.state == "awake"
    assert handle.stop(timeout=30) is True
    task = manager.task(task_id)
    assert task["status"] == "failed" and "stopped by the embedding program" in task["activity"]
    assert ("POST", "/sign-off", 204) in manager.requests_log
    assert handle.wait(0) == 0 and handle.stop(0) is True


def test_stop_from_a_callback_only_requests_it(manager, tmp_path, caplog):
    task_id = manager.submit_job(one_task_job({"name": "echo", "settings": {"message": "hi"}}))["task_ids"][0]
    handle = fworker.start_worker(embedded_settings(manager, tmp_path))
    answers = []
    handle.subscribe("task_finished", lambda event, **data: answers.append(handle.stop(0)))
    assert handle.wait(timeout=30) == 0
    assert answers == [False]  # it cannot wait for its own greenlet; the worker then stopped
    assert manager.task(task_id)["status"] == "completed"
    assert "event subscriber" not in caplog.text


def test_a_fatal_error_reaches_wait(tmp_path, caplog):
    from fworker.devmanager import DevManager

    # Long secrets: PyJWT warns about HS256 keys shorter than 32 bytes.
    strict = DevManager(str(tmp_path / "strict.sqlite"), registration_secret="R" * 40).start()
    try:
        handle = fworker.start_worker(embedded_settings(strict, tmp_path, worker_registration_secret="W" * 40))
        with pytest.raises(RegistrationRefused, match="refused to register"):
            handle.wait(timeout=30)
    finally:
        strict.stop()
    assert handle.stop(0) is True and not handle.running  # stop() never raises
    assert "the embedded worker stopped with an error" in caplog.text
