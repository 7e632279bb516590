"""A reliability run with the hostile cases of issue 15 mixed in: the soak's run.

``SoakRun`` is a ``relharness.Run`` whose job also holds hostile tasks, drawn from the
seed, and whose fault schedule also draws hostile Manager behaviour and operator
mistakes.  What each hostile case must lead to is checked at the end, on top of
everything the harness checks (nothing lost, in order, no orphans, a clean exit):

tasks (``TASKS``, expected status in ``EXPECTED``):
- ``huge-cmdline`` (case 1): a 2 MiB command line: fails, naming the setting; the
  event loop is never blocked for long by the worker's own doing
  (``hub_blocked_own_max``; ``hub_blocked_max`` counts a starved CPU in);
- ``copy-device`` (case 3): a copy from ``/dev/zero``: refused, fails;
- ``escape`` (case 4): a child that double-forks with ``setsid`` and an empty
  environment and sleeps: the task completes and nothing of it survives;
- ``unannounced`` (case 7): the proxy hands it over with a type the worker did not
  announce: fails without running;
- ``surrogate`` (case 9): a lone surrogate in an echo: completes, replaced by U+FFFD;
- ``nul`` (case 9): a NUL in a command line: fails, naming the NUL;
- ``newline-name`` (case 11a): a task name with a line break and a forged log line:
  completes; no line of the worker's log starts with the forged text.

faults (``FAULT_WEIGHTS``, on top of ``relharness.WEIGHTS``):
- ``trickle`` and ``huge`` (cases 5, 6): fault-proxy kinds, on any request;
- ``answer-401``, ``answer-302``, ``answer-418``, ``malformed-task`` (case 6): for a
  while every request for a task gets that answer;
- ``double-start`` (case 2): a second worker on the same configuration and queue must
  exit 6 at once, naming the lock, and leave the first undisturbed.
"""
from __future__ import annotations

import random
import re
import urllib.request

import gevent
import psutil

from fworker.devmanager.v3 import jobs as jobs3
from tests.support import jobs, relharness
from tests.support.waiting import wait_until
from tests.support.workers import free_port

TASKS = ("huge-cmdline", "copy-device", "escape", "unannounced", "surrogate", "nul", "newline-name")
EXPECTED = {"huge-cmdline": "failed", "copy-device": "failed", "escape": "completed", "unannounced": "failed",
            "surrogate": "completed", "nul": "failed", "newline-name": "completed"}
# What the failed ones' activity must say (a clear error naming what was wrong).
ACTIVITY = {"huge-cmdline": r"characters long|the system allows", "copy-device": r"is a device",
            "unannounced": r"is not one this worker announced", "nul": r"NUL"}
FAULT_WEIGHTS = {**relharness.WEIGHTS, "trickle": 1, "huge": 1, "answer-401": 1, "answer-302": 1,
                 "answer-418": 1, "malformed-task": 1, "double-start": 1}
ANSWERS = {"answer-401": (401, b"Unauthorized\n", "text/plain"), "answer-302": (302, b"", "text/html"),
           "answer-418": (418, b"I'm a teapot\n", "text/plain"),
           "malformed-task": (200, b'["not", "a", "task"]\n', "application/json")}
FETCH_PATHS = {"v2": r"^/task$", "v3": r"^/api/v3/worker/task$"}
HUGE_TEXT = 2 * 1024 * 1024
FORGED = "FORGED-LINE"
LOCKED_EXIT = 6


def hostile_tasks(seed: int, count: int = 2) -> list[str]:
    """The seed's hostile tasks: ``count`` distinct kinds."""
    return random.Random(seed * 7919).sample(TASKS, count)


def escape_code(token: str) -> str:
    """Python for a task child that escapes: a double fork, ``setsid``, an empty
    environment; the grandchild sleeps with ``token`` in its command line."""
    return ("import os,sys,time\n"
            "if os.fork() == 0:\n"
            "    os.setsid()\n"
            "    if os.fork() == 0:\n"
            "        os.execve(sys.executable,\n"
            f"                  [sys.executable, '-c', 'import time; time.sleep(300)', {token!r}], {{}})\n"
            "    os._exit(0)\n"
            "print('escaped a helper', flush=True)\n")


class SoakRun(relharness.Run):
    def __init__(self, seed: int, root, steps: list[relharness.Step], tasks: int, lines: int,
                 protocol: str = "v2", hostile: list[str] | None = None):
        self.hostile = list(hostile if hostile is not None else hostile_tasks(seed))
        self.hub_blocked_max = 0.0  # wall clock: what a client of the worker saw
        self.hub_blocked_own_max = 0.0  # less the time the kernel kept the loop waiting for a CPU
        self.rss: list[int] = []  # the worker's RSS: [first sample while working, ..., at the end]
        self.double_starts: list[int] = []
        super().__init__(seed, root, steps, tasks, lines, protocol)

    # The job and what must become of it.

    def make_job(self, tasks: int, lines: int) -> dict:
        doc = super().make_job(tasks, lines)
        doc["tasks"] = doc["tasks"] + [self._hostile_task(kind) for kind in self.hostile]
        return doc

    def _hostile_task(self, kind: str) -> dict:
        name = f"hostile-{kind}" if kind != "newline-name" else f"hostile\n{FORGED} {self.token} ERROR forged"
        v3 = self.protocol == "v3"
        if kind == "huge-cmdline":
            command = jobs3.exec_command("/bin/echo", ["x" * HUGE_TEXT]) if v3 else \
                {"name": "exec", "settings": {"cmd": "x" * HUGE_TEXT}}
        elif kind == "copy-device":
            dest = str(self.root / "copied")
            command = jobs3.copy_file("/dev/zero", dest) if v3 else \
                {"name": "copy_file", "settings": {"src": "/dev/zero", "dest": dest}}
        elif kind == "escape":
            code = escape_code(self.token)
            command = jobs3.exec_command(jobs.PY, ["-c", code]) if v3 else jobs.exec_cmd(code)
        elif kind == "nul":
            command = jobs3.exec_command("/bin/echo", ["a\0b"]) if v3 else \
                {"name": "exec", "settings": {"cmd": "/bin/echo a\0b"}}
        else:  # unannounced, surrogate, newline-name: an echo
            text = f"half \ud800 a pair of {self.token}" if kind == "surrogate" else f"{kind} of {self.token}"
            command = jobs3.echo(text) if v3 else jobs.echo(text)
        return jobs3.task(name, [command]) if v3 else jobs.task(name, [command])

    def prepare(self) -> None:
        for task_id, kind in zip(self.task_ids[-len(self.hostile):] if self.hostile else [], self.hostile,
                                 strict=True):
            self.expected[task_id] = EXPECTED[kind]
        self.settings["metrics_port"] = str(free_port())
        if "unannounced" in self.hostile:
            self.proxy.rewrite("POST", FETCH_PATHS[self.protocol], _forge_type, times=-1)

    # Faults of the soak's own.

    def execute(self, deadline: float) -> relharness.RunResult:
        sampler = gevent.spawn(self._first_rss)
        try:
            return super().execute(deadline)
        finally:
            sampler.kill()

    def inject_other(self, step: relharness.Step) -> None:
        if step.kind in ANSWERS:
            status, body, content_type = ANSWERS[step.kind]
            self.proxy.mark(step.kind, fault=True)
            self.proxy.answer("POST", FETCH_PATHS[self.protocol], status, body, content_type=content_type)
            rule = self.proxy.rules[-1]
            gevent.sleep(1 + step.seconds)  # the length of the misbehaviour is the fault
            self.proxy.rules.remove(rule)
        elif step.kind == "double-start":
            self.proxy.mark(step.kind, fault=True)
            self._double_start()
        else:
            super().inject_other(step)

    def _double_start(self) -> None:
        # The worker restarted a moment ago may not hold the lock yet: the second one
        # would take it, and the first exit 6.
        if self._metrics() is None:
            return
        second = relharness.JournaledWorker(self.root / "w", self.proxy.url, self.settings).start()
        try:
            code = second.wait(timeout=60)
        finally:
            second.stop()
        self.double_starts.append(code)
        if code != LOCKED_EXIT or "holds the lock file" not in second.output:
            self.result.problems.append(f"a second worker on the same queue exited {code}, not {LOCKED_EXIT} "
                                        f"naming the lock:\n{second.output[-2000:]}")

    def before_stop(self) -> None:
        self._read_hub_blocked()  # first: it waits for a worker restarted a moment ago to start
        sample = _rss(self.worker.proc.pid)
        if sample:
            self.rss.append(sample)

    def _kill_and_restart(self, label: str, seconds: float) -> None:
        self._read_hub_blocked()
        super()._kill_and_restart(label, seconds)

    # Measurements.

    def _first_rss(self) -> None:
        """The worker's RSS once it is at work: when its first task update went out."""
        while not self._updates():
            gevent.sleep(0.05)  # polling the proxy's record, the run's clock
        sample = _rss(self.worker.proc.pid)
        if sample:
            self.rss.append(sample)

    def _metrics(self) -> str | None:
        """The worker's /metrics text, once it answers: a worker restarted moments ago
        listens (and holds the queue's lock) only once it has started.  None, and a
        problem, if it never does."""
        url = f"http://127.0.0.1:{self.settings['metrics_port']}/metrics"
        read: list[str] = []
        errors: list[OSError] = []

        def answered() -> bool:
            try:
                with urllib.request.urlopen(url, timeout=5) as answer:
                    read.append(answer.read().decode())
                return True
            except OSError as ex:
                errors[:] = [ex]
                return self.worker.proc.poll() is not None  # dead: the harness reports that
        try:
            wait_until(answered, 30, what="the worker's /metrics")
        except AssertionError as ex:
            read.clear()
            errors[:] = [OSError(str(ex))]
        if not read:
            self.result.problems.append(f"/metrics not readable: {errors[-1] if errors else 'no answer'}")
            return None
        return read[-1]

    def _read_hub_blocked(self) -> None:
        text = self._metrics()
        if text is None:
            return
        for name, attr in (("fworker_hub_blocked_max_seconds", "hub_blocked_max"),
                           ("fworker_hub_blocked_own_max_seconds", "hub_blocked_own_max")):
            found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
            if found is None:
                self.result.problems.append(f"/metrics has no {name}")
            else:
                setattr(self, attr, max(getattr(self, attr), float(found.group(1))))

    # The hostile cases' checks.

    def check_more(self) -> None:
        for task_id, kind in zip(self.task_ids[len(self.task_ids) - len(self.hostile):], self.hostile, strict=True):
            task = self.manager.task(task_id)
            pattern = ACTIVITY.get(kind)
            if pattern and not re.search(pattern, task.get("activity") or ""):
                self.result.problems.append(f"{kind}: activity {task.get('activity')!r} does not say why")
            if kind == "surrogate" and "half \ufffd a pair" not in self.manager.task_log(task_id):
                self.result.problems.append("surrogate: the log does not hold the replacement character")
            if kind == "unannounced" and "unannounced of" in self.manager.task_log(task_id):
                self.result.problems.append("unannounced: the task ran")
        logs = "".join(path.read_text(errors="replace") for path in sorted((self.root / "w").glob("worker-*.log")))
        if any(line.startswith(FORGED) for line in logs.splitlines()):
            self.result.problems.append("a task name forged a line of the worker's log")


def _forge_type(task: object) -> object:
    """The unannounced task handed over with a type no worker announces."""
    if isinstance(task, dict) and str(task.get("name", "")).startswith("hostile-unannounced"):
        return dict(task, task_type="mine-craft")
    return task


def _rss(pid: int) -> int:
    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return 0
