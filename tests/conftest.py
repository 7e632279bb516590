"""Shared fixtures.  Importing fworker first monkey-patches the test process,
so the in-process development Manager and worker run under gevent."""
import fworker  # noqa: F401  (must come first)

import logging

import pytest

from fworker.commands import base


class RecordingReporter:
    """A Reporter that keeps everything a command reports, in order."""

    def __init__(self):
        self.events: list[tuple[str, object]] = []
        self.log_times: list[float | None] = []  # the ``at`` of each log line

    def log_line(self, line, at=None):
        self.events.append(("log", line))
        self.log_times.append(at)

    def activity(self, text):
        self.events.append(("activity", text))

    def command_progress(self, percent):
        self.events.append(("progress", percent))

    def output_produced(self, paths):
        self.events.append(("output", list(paths)))

    def timing(self, phase, seconds):
        self.events.append(("timing", (phase, seconds)))

    def of(self, kind):
        return [value for k, value in self.events if k == kind]

    @property
    def log(self):
        return self.of("log")


@pytest.fixture
def recorder():
    return RecordingReporter()


@pytest.fixture
def run_command(recorder):
    """run_command(name, settings) validates and executes one registered
    command against a RecordingReporter and returns the reporter."""
    import fworker.commands  # noqa: F401  (registers every built-in command)

    def run(name, settings, settings_obj=None):
        cmd = base.lookup(name)(base.CommandContext(recorder, logging.getLogger("test." + name), settings_obj))
        cmd.execute(cmd.validate(settings))
        return recorder

    return run


@pytest.fixture
def manager(tmp_path):
    """The development Manager, in this process, on a free loopback port."""
    from fworker.devmanager import DevManager

    m = DevManager(str(tmp_path / "manager.sqlite"))
    m.start()
    yield m
    m.stop()


@pytest.fixture
def worker_process(tmp_path):
    """worker_process(url, settings=None, args=None) -> a started WorkerProcess;
    every one started is killed at the end of the test."""
    from workerproc import WorkerProcess

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
