"""The worker's life cycle: start up, ask for tasks, run them, shut down.

``Worker.run()`` loops over ``run_once()`` (one fetch, or one task) until a
shutdown is requested; tests can call ``start()``, ``run_once()`` and
``shutdown()`` themselves.  Signal handlers only record the request
(``request_shutdown``); the loop acts on it.
"""
from __future__ import annotations

import logging
import os
import random
import signal
import time
import typing

import gevent
import gevent.event
import psutil

from fworker import logsetup, metrics, pretask, states
from fworker.errors import RetryLater
from fworker.events import EventBus
from fworker.flusher import Flusher
from fworker.process import enable_subreaper
from fworker.queue import UpdateQueue
from fworker.registration import Registrar
from fworker.runner import Abort, Outcome, TaskRunner
from fworker.states import State
from fworker.task import BadTask, Task, parse_task
from fworker.taskwatch import MayIRunPoller, OutputThrottle
from fworker.upstream import Backoff, Upstream

log = logging.getLogger(__name__)


class Worker:
    def __init__(self, settings: typing.Any, *, credentials_path: str | None, reregister: bool = False,
                 single: bool = False, test_mode: bool = False):
        self.settings = settings
        self.reregister = reregister
        self.single = single
        self.test_mode = test_mode
        if test_mode:
            settings.task_types = ["test-blender-render"]
        self.upstream = Upstream(settings.manager_url, timeout=settings.http_timeout)
        self.registrar = Registrar(self.upstream, settings, credentials_path)
        self.queue = UpdateQueue(settings.task_update_queue_db)
        self.backoff = Backoff(settings.backoff_initial, settings.backoff_max)
        self.events = EventBus()
        self.stats = metrics.Stats()
        self.flusher = Flusher(self.queue, self.upstream,
                               backoff=Backoff(settings.backoff_initial, settings.backoff_max),
                               on_task_lost=self._on_task_lost, on_delivered=self._delivered)
        self.machine = states.StateMachine(self._state_changed)
        self.task_logs = logsetup.TaskLogFiles(settings.task_log_folder, settings.task_log_keep)
        self.metrics_server: metrics.MetricsServer | None = None
        self.output = OutputThrottle(self.upstream, settings.output_produced_interval)
        self.wakeup = gevent.event.Event()
        self.shutdown_reason: str | None = None
        self.signals_received = 0
        self.local_request: State | None = None  # from SIGUSR1/SIGUSR2, applied by the loop
        self.runner: TaskRunner | None = None
        self.runner_greenlet: gevent.Greenlet | None = None
        self.last_outcome: Outcome | None = None
        self.tasks_done = 0
        self._greenlets: list[gevent.Greenlet] = []

    # Requests from outside the loop: they only record and wake.

    def request_shutdown(self, reason: str) -> None:
        if self.shutdown_reason is None:
            log.info("shutdown requested: %s", reason)
            self.shutdown_reason = reason
        self.wakeup.set()

    def request_state(self, state: State) -> None:
        self.local_request = state
        self.wakeup.set()

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            gevent.signal_handler(signum, self._on_signal, signum)
        # Operators' local switches; a running task finishes first (like a lazy request).
        gevent.signal_handler(signal.SIGUSR1, self.request_state, State.ASLEEP)
        gevent.signal_handler(signal.SIGUSR2, self.request_state, State.AWAKE)
        gevent.signal_handler(signal.SIGHUP, logsetup.reopen)

    def _on_signal(self, signum: int) -> None:
        self.signals_received += 1
        name = signal.Signals(signum).name
        if self.signals_received > 1:
            log.warning("second %s: exiting at once; queued updates stay in %s", name, self.queue.path)
            _kill_descendants()
            os._exit(130)
        self.request_shutdown(f"received {name}")

    # The loop.

    def run(self) -> int:
        """Run until shut down; the process exit code."""
        try:
            self.start()
            while self.shutdown_reason is None:
                self.run_once()
        finally:
            self.shutdown()
        if self.single and self.last_outcome is not Outcome.COMPLETED:
            return 5
        return 0

    def start(self) -> None:
        # Orphaned grandchildren of renders become our children, so an abort
        # can still find them and gevent reaps them.
        enable_subreaper()
        self.metrics_server = metrics.from_settings(self.settings, self.stats)
        self._spawn_linked(self.flusher.run, "queue flusher")
        if self._retrying("sign-on", lambda: self.registrar.establish(self.reregister)):
            self.machine.change(State.TESTING if self.test_mode else State.AWAKE, "started")

    def run_once(self) -> None:
        """One step: a fetch (and the task it brings), or one wait."""
        if self.shutdown_reason is not None:
            return
        if self.local_request is not None:
            state, self.local_request = self.local_request, None
            self._change_state(state, "local signal")
        elif self.machine.state is State.ERROR:
            self._recheck()
        elif not self.machine.working:
            self._poll_status_change()
        elif not self._pre_task_checks_pass():
            return
        elif len(self.queue):
            # The Manager hands an 'active' task to its worker again until the
            # final status arrives: asking before the queue is drained would
            # run the last task twice.  A backlog also means the Manager is
            # slow or away, no time to take more work.
            self._wait_for_flush(max(self.settings.fetch_task_interval, 0.5))
            if len(self.queue):
                log.info("%d update(s) still to be sent; taking no new task until they are", len(self.queue))
        else:
            self._fetch()

    def _fetch(self) -> None:
        try:
            answer = self.upstream.fetch_task()
        except RetryLater as ex:
            return self._back_off(ex)
        self.backoff.reset()
        if answer.status == 200:
            return self._accept(answer.body)
        if answer.status == 204:
            return self._wait(_jitter(self.settings.fetch_task_interval))
        if answer.status == 423 and isinstance(answer.body, dict):
            return self._status_requested(answer.body.get("status_requested"), "Manager (on task fetch)")
        if answer.status == 401:
            return self._retrying("sign-on", self.registrar.sign_on)
        self._back_off(RetryLater(f"asking for a task: Manager answered {answer.status} {answer.text.strip()[:200]!r}"))

    def _accept(self, body: typing.Any) -> None:
        try:
            task = parse_task(body)
        except BadTask as ex:
            log.error("the Manager sent a malformed task: %s", ex)
            if ex.task_id is not None:
                self.queue.push(ex.task_id, {"task_status": "failed", "activity": f"malformed task: {ex}",
                                             "log": f"worker refused a malformed task: {ex}"})
            return self._back_off(RetryLater(str(ex)))
        self.run_task(task)

    def run_task(self, task: Task) -> Outcome:
        log.info("task %s (%s, %s): %d command(s)", task.id, task.name, task.task_type, len(task.commands))
        local_log = self.task_logs.open(task.id)
        self.runner = TaskRunner(task, self.queue, self.settings, on_output=self.output.add,
                                 events=self.events, local_log=local_log)
        self.stats.task_id, self.stats.task_progress = task.id, 0
        self.events.emit("task_started", task_id=task.id, name=task.name)
        greenlet = self.runner_greenlet = gevent.spawn(self.runner.run)
        greenlet.link(lambda _: self.wakeup.set())
        poller = MayIRunPoller(self.upstream, task.id, self.settings.may_i_run_interval, self._stop_task)
        poller_greenlet = gevent.spawn(poller.run)
        try:
            while not greenlet.ready():
                self.wakeup.wait()
                self.wakeup.clear()
                if self.shutdown_reason is not None and not greenlet.ready():
                    greenlet.kill(Abort("worker shut down", give_back=False), block=False)
            outcome = greenlet.get()
        finally:
            poller_greenlet.kill()
            local_log.close()
            self.runner = self.runner_greenlet = None
            self.stats.task_id = None
        if outcome is Outcome.RETURNED:
            self._give_back(task)
        self.last_outcome = outcome
        self.tasks_done += 1
        counter = {Outcome.COMPLETED: "tasks_completed", Outcome.FAILED: "tasks_failed",
                   Outcome.RETURNED: "tasks_returned"}[outcome]
        setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        log.info("task %s: %s", task.id, outcome.value)
        self.events.emit("task_finished", task_id=task.id, outcome=outcome.value)
        if self.single:
            self.request_shutdown("single mode: one task done")
        return outcome

    def _stop_task(self, reason: str, requested: str | None = None) -> None:
        """Stop the running task and give it back (the Manager said so)."""
        if requested is not None:
            self._status_requested(requested, "Manager (may-i-run)")
        greenlet = self.runner_greenlet
        if greenlet is not None and not greenlet.ready():
            log.warning("stopping the running task: %s", reason)
            greenlet.kill(Abort(reason, give_back=True), block=False)

    def _on_task_lost(self, task_id: str, why: str) -> None:
        if self.runner is not None and self.runner.task.id == task_id:
            self._stop_task(f"the Manager refused its updates: {why}")

    def _give_back(self, task: Task) -> None:
        """Send the task's remaining log, then return it."""
        self._wait_for_flush(self.settings.shutdown_flush_timeout)
        try:
            self.upstream.return_task(task.id)
            log.info("task %s returned to the Manager", task.id)
        except RetryLater as ex:
            log.warning("could not return task %s (the Manager re-queues it on sign-off or timeout): %s", task.id, ex)

    # Status changes.

    def _status_requested(self, requested: typing.Any, source: str) -> None:
        if not isinstance(requested, str):
            log.warning("%s sent a malformed status request %r; ignoring it", source, requested)
            return
        new = states.from_request(requested)
        if new is State.SHUTDOWN:
            self.request_shutdown(f"{source} asked for shutdown")
            return
        if new.value != requested:
            log.warning("%s asked for unknown status %r; going to sleep instead", source, requested)
        self._change_state(new, f"requested by {source}")

    def _change_state(self, new: State, reason: str) -> None:
        if not self.machine.change(new, reason) and new is self.machine.state:
            # Already there: acknowledge anyway, or the Manager keeps asking.
            self._tell_manager(new, new)

    def _pre_task_checks_pass(self) -> bool:
        found = self._check_problems()
        if found:
            log.error("pre-task check failed, taking no task: %s", "; ".join(found))
            self.machine.change(State.ERROR, "pre-task check failed")
            self._wait(self.settings.pre_task_check_interval)
        return not found

    def _recheck(self) -> None:
        found = self._check_problems()
        if not found:
            self.machine.change(State.TESTING if self.test_mode else State.AWAKE, "pre-task check passes again")
        else:
            log.warning("pre-task check still fails: %s", "; ".join(found))
            self._wait(self.settings.pre_task_check_interval)

    def _check_problems(self) -> list[str]:
        return pretask.check(self.settings)

    def _poll_status_change(self) -> None:
        try:
            answer = self.upstream.status_change()
        except RetryLater as ex:
            return self._back_off(ex)
        if answer.status == 200 and isinstance(answer.body, dict):
            return self._status_requested(answer.body.get("status_requested"), "Manager")
        self._wait(_jitter(self.settings.fetch_task_interval))

    def _state_changed(self, old: State, new: State) -> None:
        self.stats.state = new.value
        self._tell_manager(old, new)
        self.events.emit("state_changed", old=old.value, new=new.value)

    def _delivered(self, batch: typing.Any) -> None:
        stats = self.stats
        stats.updates_sent += len(batch.ids)
        stats.updates_retried = self.flusher.retries
        stats.log_bytes_sent += len(batch.payload.get("log", "").encode("utf-8"))
        stats.last_manager_contact = time.time()  # wall clock: shown to people
        stats.queue_depth = len(self.queue)
        if "task_progress_percentage" in batch.payload and batch.task_id == stats.task_id:
            stats.task_progress = batch.payload["task_progress_percentage"]
        self.events.emit("update_delivered", task_id=batch.task_id, count=len(batch.ids))

    def _tell_manager(self, old: State, new: State) -> None:
        if new in (State.SHUTDOWN, State.STARTING):
            return
        try:
            self.upstream.ack_status_change(new.value)
        except RetryLater as ex:
            log.warning("could not acknowledge status %s: %s", new, ex)

    # Shutting down.

    def shutdown(self) -> None:
        if self.machine.state is State.SHUTDOWN:
            return
        self.machine.change(State.SHUTDOWN, self.shutdown_reason or "stopping")
        self._wait_for_flush(self.settings.shutdown_flush_timeout)
        for greenlet in self._greenlets:
            greenlet.unlink_all()
        self.flusher.stop()
        gevent.killall(self._greenlets, timeout=5)
        self.output.flush()
        if len(self.queue):
            log.warning("%d update(s) not sent; they stay queued in %s for the next start",
                        len(self.queue), self.queue.path)
        if self.upstream.worker_id:
            try:
                answer = self.upstream.sign_off()
                log.info("signed off (%d)", answer.status)
            except RetryLater as ex:
                log.warning("could not sign off: %s", ex)
        self.queue.close()
        if self.metrics_server is not None:
            self.metrics_server.stop()

    def _wait_for_flush(self, timeout: float) -> bool:
        with gevent.Timeout(timeout, False):
            while len(self.queue):
                self.flusher.idle.wait(0.1)
        return not len(self.queue)

    # Helpers.

    def _spawn_linked(self, fn: typing.Callable[[], None], what: str) -> None:
        greenlet = gevent.spawn(fn)
        greenlet.link(lambda g: self._greenlet_died(g, what))
        self._greenlets.append(greenlet)

    def _greenlet_died(self, greenlet: gevent.Greenlet, what: str) -> None:
        log.error("the %s stopped unexpectedly: %r; shutting down", what, greenlet.exception)
        self.request_shutdown(f"{what} died")

    def _retrying(self, what: str, fn: typing.Callable[[], None]) -> bool:
        """Call ``fn`` until it works (True) or a shutdown is requested (False)."""
        while self.shutdown_reason is None:
            try:
                fn()
                self.backoff.reset()
                return True
            except RetryLater as ex:
                self._back_off(ex, what)
        return False

    def _back_off(self, ex: Exception, what: str = "asking for a task") -> None:
        delay = self.backoff.next_delay()
        log.warning("%s failed, retrying in %.1fs: %s", what, delay, ex)
        self._wait(delay)

    def _wait(self, seconds: float) -> None:
        """Sleep, but wake at once for a shutdown request."""
        self.wakeup.wait(seconds)
        self.wakeup.clear()


def _jitter(seconds: float) -> float:
    return seconds * random.uniform(0.8, 1.2)


def _kill_descendants() -> None:
    for child in psutil.Process().children(recursive=True):
        try:
            child.kill()
        except psutil.Error:
            pass  # already gone: that is what we wanted
