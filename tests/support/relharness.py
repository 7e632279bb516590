"""The real worker against the fault-injecting Manager, with a seeded fault schedule.

``run(seed, root)`` starts the development Manager and the fault proxy in this process,
the journaled worker (``journaled_worker.py``) as a child process, submits a job of
counting tasks, and injects faults as the exchanges go by: the schedule says after how
many requests each fault comes, so a seed gives the same schedule every time (the exact
moment in the worker's life still varies a little, which is the point).  Afterwards it
checks everything ``RunResult`` reports.  Used by the tests and by ``report.py``.

``protocol`` picks the Manager: ``v2`` (the Flamenco 2.x development Manager) or ``v3``
(the Flamenco 3 one, the worker forced to speak v3): the same tasks in each one's job
format, the same faults on each one's update path, the delivery check comparing what the
v3 edge sends (``relcheck.encode_v3``; ``encode_v2`` for 2.x), and every request valid
against the v3 schemas.
"""
from __future__ import annotations

import fworker  # noqa: F401  (monkey-patches first)

# isort: split

import collections
import dataclasses
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid

import gevent
import psutil

from fworker.devmanager import DevManager
from fworker.devmanager.v3 import DevManager3, jobs as jobs3
from tests.support import faults, jobs, relcheck
from tests.support.faults import FaultProxy
from tests.support.journal import journal, queued
from tests.support.waiting import wait_until
from tests.support.workers import FAST, WorkerProcess

HERE = os.path.dirname(os.path.abspath(__file__))
JOURNALED = os.path.join(HERE, "journaled_worker.py")
PY = sys.executable
HTTP_TIMEOUT = 1.0
SETTINGS = {**FAST, "http_timeout": str(HTTP_TIMEOUT), "abort_grace_period": "0.5"}

# Per-request faults and how often each is drawn; then outages: "refuse" (the Manager
# unreachable), "kill" (SIGKILL, restart after a while), "kill-in-outage" (killed while
# its updates pile up, restarted while the Manager is still away), "kill-after-outage"
# (killed while it sends the backlog of an outage).
WEIGHTS = {"reset": 2, "html500": 2, "garbage": 1, "empty": 1, "wrongshape": 1, "slow": 1, "drop": 3,
           "refuse": 2, "kill": 1, "kill-in-outage": 1, "kill-after-outage": 1}
KILLS = ("kill", "kill-in-outage", "kill-after-outage")

# A Step's path standing for "task updates", whichever the Manager; per protocol, the
# regular expression of the update requests' paths.
UPDATES = r"/update$"
UPDATE_PATHS = {"v2": UPDATES, "v3": r"^/api/v3/worker/task/[0-9a-f-]{36}$"}
PROTOCOLS = ("v2", "v3")


class JournaledWorker(WorkerProcess):
    """WorkerProcess running journaled_worker.py instead of ``python -m fworker``."""

    def start(self) -> JournaledWorker:
        env = dict(os.environ, HOME=str(self.home), PYTHONUNBUFFERED="1")
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115  (kept open by the object; its close() closes it)
        self.proc = subprocess.Popen([PY, JOURNALED, "-c", str(self.config), "-v", *self.args],
                                     cwd=self.workdir, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self._stderr, stderr=subprocess.STDOUT)
        return self


@dataclasses.dataclass
class Step:
    after: int  # requests the proxy has seen
    kind: str
    path: str = ""  # regular expression the request path must match
    times: int = 1
    seconds: float = 0.0  # outage length, or time until the killed worker is restarted


@dataclasses.dataclass
class RunResult:
    seed: int
    protocol: str = "v2"
    seconds: float = 0.0
    faults: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    delivery: relcheck.Delivery = dataclasses.field(default_factory=relcheck.Delivery)
    orphans: int = 0
    longest_outage: float = 0.0  # connections refused, or no worker running
    worker_exit: int | None = None
    problems: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.delivery.problems and not self.delivery.lost and not self.orphans


def schedule(seed: int, faults: int = 10, max_outage: float = 1.5, kills: int = 1,
             weights: dict[str, int] | None = None) -> list[Step]:
    """``weights``: how often each kind is drawn (default ``WEIGHTS``); a kind the
    harness does not know is for a ``Run`` subclass's ``inject_other``."""
    rng = random.Random(seed)
    steps, after = [], 0
    kinds, weights = zip(*(weights or WEIGHTS).items(), strict=True)
    while len(steps) < faults:
        after += rng.randint(2, 12)
        kind = rng.choices(kinds, weights)[0]
        if kind in KILLS:
            if kills <= 0:
                continue
            kills -= 1
        path = UPDATES if rng.random() < 0.6 else ""
        seconds = round(rng.uniform(0.1, 0.6 if kind == "kill" else max_outage), 2)
        steps.append(Step(after, kind, path, rng.randint(1, 3), seconds))
    return steps


def job(tasks: int, lines: int, token: str, protocol: str = "v2") -> dict:
    """Tasks that count ``lines`` lines; ``token`` marks their processes as this run's."""
    if protocol == "v3":
        counter = [jobs.PY, "-c", jobs.COUNTER, str(lines), "/nonexistent/stop", "0", token]
        return jobs3.job("reliability", [jobs3.task(f"count-{i}", [
            jobs3.echo(f"task {i} of {token}"), jobs3.exec_command(counter[0], counter[1:])])
            for i in range(tasks)])
    return jobs.job(*(jobs.task(f"count-{i}", [jobs.echo(f"task {i} of {token}"), jobs.counter(lines, marker=token)])
                      for i in range(tasks)), name="reliability")


class Run:
    """One run.  Subclasses (the soak's) add tasks (``make_job``, ``expected``), set
    things up before the worker starts (``prepare``), inject faults of their own
    (``inject_other``) and check more at the end (``check_more``)."""

    def __init__(self, seed: int, root, steps: list[Step], tasks: int, lines: int, protocol: str = "v2"):
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol {protocol!r}: expected one of {PROTOCOLS}")
        self.seed, self.root, self.steps, self.protocol = seed, root, steps, protocol
        self.token = f"reliability-{seed}-{uuid.uuid4().hex[:8]}"
        self.result = RunResult(seed, protocol)
        database = str(root / "manager.sqlite")
        self.manager = DevManager3(database).start() if protocol == "v3" else DevManager(database).start()
        self.proxy = FaultProxy(self.manager.url, slow_delay=HTTP_TIMEOUT * 1.3,
                                  client_timeout=HTTP_TIMEOUT).up()
        self.task_ids = self.manager.submit_job(self.make_job(tasks, lines))["task_ids"]
        # The status each task must end in, by ID (completed unless a subclass says otherwise).
        self.expected = dict.fromkeys(self.task_ids, "completed")
        self.settings = {**SETTINGS, "manager_protocol": protocol}
        (root / "w").mkdir(exist_ok=True)
        self.prepare()
        self.worker = JournaledWorker(root / "w", self.proxy.url, self.settings).start()
        self.done = False
        self.down_gaps: list[float] = []

    def make_job(self, tasks: int, lines: int) -> dict:
        return job(tasks, lines, self.token, self.protocol)

    def prepare(self) -> None:
        """Called once the job is submitted, before the worker starts."""

    def inject_other(self, step: Step) -> None:
        raise ValueError(f"fault kind {step.kind!r} is not one the harness knows")

    def before_stop(self) -> None:
        """Called at the end, the queue drained, before the worker is told to stop."""

    def check_more(self) -> None:
        """Called at the end, after the worker stopped and delivery was checked."""

    def execute(self, deadline: float) -> RunResult:
        started = time.monotonic()
        injector = gevent.spawn(self._inject_all)
        try:
            wait_until(self._all_final, deadline, what="every task in its expected final status")
        except AssertionError as ex:
            self.result.problems.append(f"tasks not all as expected: {ex}; statuses {self._statuses()}, "
                                        f"expected {list(self.expected.values())}")
        finally:
            self.done = True
            injector.join(timeout=HTTP_TIMEOUT * 10)
            injector.kill()
            self.proxy.clear()
            self.proxy.up()
        self._finish()
        self.result.seconds = round(time.monotonic() - started, 1)
        return self.result

    def close(self) -> None:
        self.worker.stop()
        self.proxy.down()
        self.manager.stop()
        for proc in _marked(self.token):  # only after a failed run: the test already failed
            proc.kill()

    def _all_final(self) -> bool:
        return self._statuses() == list(self.expected.values())

    def _statuses(self) -> list[str]:
        return [self.manager.task(task_id)["status"] for task_id in self.task_ids]

    def _inject_all(self) -> None:
        for step in self.steps:
            while len(self.proxy.exchanges) < step.after and not self.done:
                gevent.sleep(0.01)  # polling the request count, the schedule's clock
            if self.done:
                return
            self._inject(step)

    def _inject(self, step: Step) -> None:
        if step.kind == "refuse":
            # The outage's length is the fault itself, not a wait for something.
            self.proxy.outage(step.seconds).join()
        elif step.kind == "kill":
            self._kill_and_restart(step.kind, step.seconds)
        elif step.kind == "kill-in-outage":
            self.proxy.down()
            gevent.sleep(step.seconds / 2)  # updates pile up in the queue meanwhile
            self._kill_and_restart(step.kind, step.seconds / 2)
            self.proxy.up()
        elif step.kind not in KILLS and step.kind not in faults.KINDS:
            self.inject_other(step)
        elif step.kind == "kill-after-outage":
            self.proxy.outage(step.seconds).join()
            ended = self.proxy.outages[-1][1]
            deadline = time.monotonic() + 10 * HTTP_TIMEOUT
            while not any(x.started > ended for x in self._updates()) and time.monotonic() < deadline:
                gevent.sleep(0.005)  # polling for the first update after the outage
            self._kill_and_restart(step.kind, 0.1)  # while it sends the backlog
        else:
            path = UPDATE_PATHS[self.protocol] if step.path == UPDATES else step.path
            self.proxy.inject(step.kind, path, times=step.times)

    def _kill_and_restart(self, label: str, seconds: float) -> None:
        self.proxy.mark(label, fault=True)
        killed_at = time.monotonic()
        self.worker.proc.kill()
        self.worker.wait()
        gevent.sleep(seconds)  # the worker stays dead this long: part of the fault
        self.proxy.mark("restart")
        self.down_gaps.append(time.monotonic() - killed_at)
        self.worker = JournaledWorker(self.root / "w", self.proxy.url, self.settings).start()

    def _finish(self) -> None:
        result, worker = self.result, self.worker
        try:
            wait_until(lambda: queued(worker.queue_db) == 0 or worker.proc.poll() is not None, timeout=30,
                       what="the worker's queue drained")
        except AssertionError as ex:
            result.problems.append(str(ex))
        if worker.proc.poll() is not None:
            result.problems.append(f"the worker died (exit {worker.proc.returncode}):\n{worker.output[-3000:]}")
        else:
            self.before_stop()
            worker.send(signal.SIGTERM)  # waits until it handles SIGTERM (WorkerProcess.send)
            result.worker_exit = worker.wait(timeout=30)
            if result.worker_exit != 0:
                result.problems.append(f"the worker exited {result.worker_exit}:\n{worker.output[-3000:]}")
        result.orphans = _orphans(self.token)
        result.faults = collections.Counter(self.proxy.injected)
        outages = [end - start for start, end in self.proxy.outages] + self.down_gaps
        result.longest_outage = round(max(outages, default=0.0), 2)
        encode = relcheck.encode_v3 if self.protocol == "v3" else relcheck.encode_v2
        result.delivery = relcheck.check(journal(worker.queue_db), self._applied(), encode)
        self._check_manager_records()
        if self.protocol == "v3":
            self._check_v3()
        self.check_more()

    def _applied(self) -> list[relcheck.Request]:
        restarts = [at for at, label in self.proxy.marks if label == "restart"]
        applied = []
        for x in self._updates():
            if x.manager_status is None:
                continue
            if x.manager_status != 204:
                self.result.problems.append(f"the Manager refused update #{x.index}: {x.manager_status}")
                continue
            generation = sum(1 for at in restarts if at < x.started)
            task_id = x.path.rsplit("/", 1)[1] if self.protocol == "v3" else x.path.split("/")[2]
            applied.append(relcheck.Request(x.index, task_id, x.body, x.response_lost, generation))
        return applied

    def _check_manager_records(self) -> None:
        """The Manager keeps every update it accepted, duplicates included."""
        rows = sorted((row for task_id in self.task_ids for row in self.manager.store.task_update_rows(task_id)),
                      key=lambda row: row["seq"])
        forwarded = [x for x in self._updates() if x.manager_status == 204]
        problem = relcheck.records_problem([row["body"] for row in rows], forwarded)
        if problem:
            self.result.problems.append(f"the Manager's records differ from what the proxy forwarded: {problem}")

    def _updates(self) -> list:
        """The proxy's exchanges that are task updates of this run's protocol."""
        if self.protocol == "v2":
            return self.proxy.updates()
        path = re.compile(UPDATE_PATHS["v3"])
        return [x for x in self.proxy.exchanges if x.method == "POST" and path.search(x.path)]

    def _check_v3(self) -> None:
        """Flamenco 3 only: every request valid against the schemas, and each task's
        steps counted to its total by the last update the worker sent for it."""
        invalid = self.manager.invalid_requests()
        if invalid:
            self.result.problems.append(f"{len(invalid)} requests invalid against the v3 schemas: {invalid[:3]}")
        for task_id in (t for t in self.task_ids if self.expected[t] == "completed"):
            task = self.manager.task(task_id)
            steps = [body["steps_completed"] for body in self.manager.task_updates(task_id)
                     if "steps_completed" in body]
            if not steps or steps[-1] != task["steps_total"]:
                self.result.problems.append(f"task {task_id}: steps sent {steps}, "
                                            f"expected to end at {task['steps_total']}")


def run(seed: int, root, *, faults: int = 10, max_outage: float = 1.5, kills: int = 1, tasks: int = 2,
        lines: int = 120, deadline: float = 60.0, steps: list[Step] | None = None,
        protocol: str = "v2") -> RunResult:
    """One run; ``steps`` replaces the seeded schedule; ``protocol``: v2 or v3."""
    root.mkdir(parents=True, exist_ok=True)
    if steps is None:
        steps = schedule(seed, faults, max_outage, kills)
    scenario = Run(seed, root, steps, tasks, lines, protocol)
    try:
        return scenario.execute(deadline)
    finally:
        scenario.close()


def _marked(token: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if token in proc.cmdline() and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _orphans(token: str) -> int:
    """Processes of this run's tasks still alive after the worker stopped."""
    try:
        wait_until(lambda: not _marked(token), timeout=10, what="the tasks' processes gone")
    except AssertionError:
        return len(_marked(token))
    return 0
