"""Shared fixtures (their helpers are in tests/support).  Importing fworker first
monkey-patches the test process, so the in-process development Manager and worker
run under gevent."""
import fworker  # noqa: F401  (must come first)

# isort: split

import logging
import socket

import pytest

from fworker.commands import base
from fworker.devmanager import DevManager
from fworker.devmanager.dispatch import Dispatcher
from fworker.devmanager.liveness import Liveness
from fworker.devmanager.roster import Roster
from fworker.devmanager.store import Store
from fworker.devmanager.v3 import DevManager3
from tests.support.client import WorkerClient
from tests.support.client3 import V3Client
from tests.support.media import make_blender_media
from tests.support.reporter import RecordingReporter
from tests.support.workers import WorkerProcess, build_worker


@pytest.fixture
def recorder():
    return RecordingReporter()


@pytest.fixture
def run_command(recorder):
    """run_command(name, settings, settings_obj=None, dialect="v2") validates and executes
    one registered command against a RecordingReporter and returns the reporter."""
    import fworker.commands  # noqa: F401  (registers every built-in command)

    def run(name, settings, settings_obj=None, dialect="v2"):
        cmd = base.lookup(name, dialect)(base.CommandContext(recorder, logging.getLogger("test." + name), settings_obj))
        cmd.execute(cmd.validate(settings))
        return recorder

    return run


def _started_managers(manager_class, tmp_path, default_db):
    """The body of make_manager and make_manager3: a factory of started Managers, all
    stopped at the end."""
    started = []

    def make(db_name=default_db, **kwargs):
        manager = manager_class(str(tmp_path / db_name), **kwargs).start()
        started.append(manager)
        return manager

    yield make
    for manager in started:
        manager.stop()


@pytest.fixture
def make_manager(tmp_path):
    """make_manager(db_name="dev.sqlite", **DevManager kwargs) -> a started development
    Manager, in this process, on a free loopback port; all of them are stopped at the
    end of the test."""
    yield from _started_managers(DevManager, tmp_path, "dev.sqlite")


@pytest.fixture
def make_manager3(tmp_path):
    """make_manager3(db_name="dev3.sqlite", **DevManager3 kwargs) -> a started Flamenco 3
    development Manager, like make_manager; all of them are stopped at the end."""
    yield from _started_managers(DevManager3, tmp_path, "dev3.sqlite")


@pytest.fixture
def manager(make_manager):
    """The development Manager, in this process, on a free loopback port."""
    return make_manager("manager.sqlite")


@pytest.fixture
def client(manager):
    """A WorkerClient registered and signed on at ``manager``."""
    return WorkerClient(manager).join()


@pytest.fixture
def manager3(make_manager3):
    """The Flamenco 3 development Manager, in this process, on a free loopback port."""
    return make_manager3()


@pytest.fixture
def client3(manager3):
    """A V3Client registered, signed on and awake at ``manager3``."""
    return V3Client(manager3).join()


@pytest.fixture
def make_worker(manager, tmp_path):
    """make_worker(**settings) -> a started in-process Worker talking to ``manager`` (the
    2.x one here; a module overriding ``manager``, as test_edge3.py does with a Flamenco 3
    one, gets its own); each one is shut down at the end of the test."""
    built = []

    def make(**settings):
        root = tmp_path / f"w{len(built)}"
        root.mkdir()
        worker = build_worker(root, manager.url, **settings)
        built.append(worker)
        worker.start()
        return worker

    yield make
    for worker in built:
        worker.request_shutdown("end of test")
        worker.shutdown()


@pytest.fixture
def udp():
    """A UDP socket on the loopback, as an SSDP responder uses (discovery tests)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


@pytest.fixture
def roster(tmp_path):
    """A Roster on its own Store, with a monotonic clock the test moves: (roster, clock)."""
    store = Store(str(tmp_path / "roster.sqlite"))
    clock = [1000.0]

    def now():
        return clock[0]

    yield Roster(store, Dispatcher(store, Liveness(now)), Liveness(now), clock=now), clock
    store.close()


@pytest.fixture
def worker_process(tmp_path):
    """worker_process(url, settings=None, args=None) -> a started WorkerProcess;
    every one started is killed at the end of the test."""
    started = []

    def start(url, settings=None, args=None, root=None):
        folder = root or tmp_path / f"w{len(started)}"
        folder.mkdir(exist_ok=True)
        proc = WorkerProcess(folder, url, settings, args).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture(scope="session")
def blender_media(tmp_path_factory):
    """The tiny Blender media (tests.support.media.BlenderMedia), made once per session."""
    return make_blender_media(tmp_path_factory.mktemp("blender"))
