"""The real worker: as a separate process (``WorkerProcess``), for end-to-end tests, or
in this process (``build_worker``), for tests that drive its loop step by step."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

from fworker import config, wiring
from tests.support.waiting import wait_until

FAST = {
    "fetch_task_interval": "0.1",
    "backoff_initial": "0.05",
    "backoff_max": "0.3",
    "may_i_run_interval": "0.3",
    "push_log_max_interval": "0.05",
    "push_act_max_interval": "0.05",
    "shutdown_flush_timeout": "5",
    "abort_grace_period": "1",
    "http_timeout": "5",
}


def build_worker(root, manager_url: str, **settings):
    """A ``fworker.worker.Worker`` in this process, its files under ``root`` (a folder),
    with the FAST timings and ``settings`` on top.  Not started: the test drives
    ``start()``, ``run_once()`` and ``shutdown()``.  The one place tests build a Worker
    in-process, so that a change of how Workers are built is made here once."""
    overrides = {"manager_url": manager_url, "task_update_queue_db": str(root / "queue.sqlite"),
                 "nickname": "in-process", **FAST, **settings}
    return wiring.build_worker(config.load(files=[], overrides=overrides),
                               credentials_path=str(root / "credentials.cfg"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WorkerProcess:
    """``python -m fworker`` with its own HOME, config file and queue."""

    def __init__(self, root, manager_url: str, settings: dict | None = None, args: list[str] | None = None):
        self.root = root
        self.home = root / "home"
        self.workdir = root / "work"
        self.home.mkdir(exist_ok=True)
        self.workdir.mkdir(exist_ok=True)
        self.config = root / "worker.cfg"
        self.queue_db = root / "queue.sqlite"
        values = {"manager_url": manager_url, "task_update_queue_db": str(self.queue_db),
                  "nickname": "test-worker", **FAST, **(settings or {})}
        lines = ["[flamenco-worker]"] + [f'{k} = "{v}"' for k, v in values.items()]
        self.config.write_text("\n".join(lines) + "\n")
        self.args = args or []
        self.stderr_path = root / f"worker-{len(list(root.glob('worker-*.log')))}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def credentials_file(self):
        return self.home / ".flamenco-worker.cfg"

    def start(self) -> WorkerProcess:
        env = dict(os.environ, HOME=str(self.home), PYTHONUNBUFFERED="1")
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115  (kept open by the object; its close() closes it)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fworker", "-c", str(self.config), "-v", *self.args],
            cwd=self.workdir, env=env, stdin=subprocess.DEVNULL, stdout=self._stderr, stderr=subprocess.STDOUT)
        return self

    @property
    def output(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 20.0) -> None:
        wait_until(lambda: text in self.output or self.proc.poll() is not None, timeout, what=repr(text))
        assert text in self.output, f"worker exited ({self.proc.returncode}) before printing {text!r}:\n{self.output}"

    def send(self, sig: int = signal.SIGTERM) -> None:
        """Send ``sig``; SIGTERM and SIGINT only once the worker handles them (its
        banner, which names the update queue, is logged right after the handlers
        are installed): before that they would kill it at once."""
        if sig in (signal.SIGTERM, signal.SIGINT):
            wait_until(lambda: "update queue" in self.output or self.proc.poll() is not None, 30,
                       what="the worker's banner")
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._stderr.close()

    def stop(self) -> int | None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if hasattr(self, "_stderr"):
            self._stderr.close()
        return self.proc.returncode if self.proc else None
