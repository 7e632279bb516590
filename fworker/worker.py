"""The worker's life cycle: start up, ask for tasks, run them, shut down.
(The conversation with the Manager between tasks is ``fworker.conversation``.)

``Worker.run()`` loops over ``run_once()`` (one fetch, or one task, or one
poll while taking no work) until a shutdown is requested; tests can call
``start()``, ``run_once()`` and ``shutdown()`` themselves.  Signal handlers
only record the request (``request_shutdown``, ``request_state``); the loop
acts on it.  Status requests from the Manager go through
``fworker.statuschange``, state changes through ``fworker.states``, pre-task
checks through ``fworker.errorstate``.
"""
from __future__ import annotations

import functools
import logging
import signal
import time
import typing

import gevent
import gevent.event

from fworker import config, logsetup, metrics, warmblender
from fworker.conversation import IDLE_MAX, Conversation
from fworker.edge import detect
from fworker.edge.base import Edge
from fworker.errors import RetryLater
from fworker.errorstate import PreTaskGate
from fworker.events import EventBus
from fworker.flusher import Flusher
from fworker.hubmonitor import HubMonitor
from fworker.proctree import enable_subreaper, exit_at_once
from fworker.queue import UpdateQueue
from fworker.runner import Abort, Outcome, TaskRunner
from fworker.states import State
from fworker.statuschange import StatusChanges
from fworker.task import Task
from fworker.taskwatch import MayIRunPoller, OutputThrottle
from fworker.upstream import Backoff, Upstream

log = logging.getLogger(__name__)

_OUTCOME_COUNTERS = {Outcome.COMPLETED: "tasks_completed", Outcome.FAILED: "tasks_failed",
                     Outcome.RETURNED: "tasks_returned"}


class Worker(Conversation):
    """One worker on ``settings`` as given (fworker.wiring.build_worker
    applies plug-ins, discovery and the test mode's task types first)."""

    hub_monitor: HubMonitor | None = None  # from start() on
    # Called once start() knows the Manager's generation (the command line logs its banner then).
    on_manager_known: typing.Callable[[], None] | None = None

    def __init__(self, settings: config.Settings, *, credentials_path: str | None, reregister: bool = False,
                 single: bool = False, test_mode: bool = False, v3_task_types: tuple[str, ...] | None = None,
                 generation: tuple[str, str] | None = None):
        """``generation``: (dialect, version) when the Manager was asked already
        (discovery); None: as ``manager_protocol`` forces, or asked at start()."""
        self.settings = settings
        self.v3_task_types = v3_task_types  # None: fworker.edge.v3.announced_task_types(settings)
        self.reregister = reregister
        self.single = single
        self.test_mode = test_mode
        self.upstream = Upstream(settings.manager_url, timeout=settings.http_timeout,
                                 tls_verify=settings.tls_verify, tls_ca_bundle=settings.tls_ca_bundle)
        self.credentials_path = credentials_path
        # Chosen once, here if the generation is known, else once start() asked the
        # Manager; every part that talks to the Manager speaks through this one object.
        self.choice = detect.EdgeChoice(self.upstream)
        known = generation if generation is not None else detect.forced(settings)
        if known is not None:
            self.choice.choose(self._new_edge(*known))
        self._signing_on = False  # shutdown() signs off only once the chosen edge began signing on
        self.queue = UpdateQueue(settings.task_update_queue_db)
        self.backoff = Backoff(settings.backoff_initial, settings.backoff_max)
        self.events = EventBus()
        self.stats = metrics.Stats()
        self._follow_in_stats()
        self.flusher = Flusher(self.queue, self.choice,
                               backoff=Backoff(settings.backoff_initial, settings.backoff_max),
                               on_task_lost=self._on_task_lost, on_delivered=self._delivered,
                               on_unauthorized=self._updates_unauthorized)
        self.status = StatusChanges(self.choice, on_change=self._state_changed,
                                    on_shutdown=lambda reason: self.request_shutdown(reason, give_back=True))
        self.machine = self.status.machine
        self.task_logs = logsetup.TaskLogFiles(settings.task_log_folder, settings.task_log_keep)
        self.metrics_server: metrics.MetricsServer | None = None
        self.output = OutputThrottle(self.choice, settings.output_produced_interval)
        self.wakeup = gevent.event.Event()
        self._reauth = False  # the Manager refused our updates with 401: sign on again
        self.shutdown_reason: str | None = None
        self.shutdown_gives_back = False  # a running task is returned (Manager's request), not failed
        self.signals_received = 0
        self.local_request: State | None = None  # from SIGUSR1/SIGUSR2, applied by the loop
        self.runner: TaskRunner | None = None
        self.runner_greenlet: gevent.Greenlet[..., typing.Any] | None = None
        self.last_outcome: Outcome | None = None
        self._aborting = False  # the running task is being stopped already
        self.pre_task = PreTaskGate(settings, self.machine, self._working_state())
        self._stopped = False
        self.helpers: list[gevent.Greenlet[..., typing.Any]] = []  # linked greenlets beside the loop (the flusher)

    # Requests from outside the loop: they only record and wake.

    def request_shutdown(self, reason: str, *, give_back: bool = False) -> None:
        if self.shutdown_reason is None:
            log.info("shutdown requested: %s", reason)
            self.shutdown_reason = reason
            self.shutdown_gives_back = give_back
        self.wakeup.set()
        if self._asking is not None:
            self._asking.kill()

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
        if self.signals_received > 1:  # the operator will not wait for the clean sequence
            exit_at_once(f"second {name}: exiting at once; queued updates stay in {self.queue.path}")
        # 2.x: the running task is reported failed; Flamenco 3 counts a failure against
        # this worker (soft-fail, blocklisting), so it is stopped silently and the
        # sign-off hands it back.
        self.request_shutdown(f"received {name}", give_back=not self.edge.shutdown_fails_task)

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
        return self.edge.exit_code  # a Flamenco 3 Manager's restart request: restart_exit_code

    @property
    def edge(self) -> Edge:
        """The edge chosen; ``detect.NotChosen`` (which asks nothing) until then."""
        return self.choice.edge

    def _new_edge(self, dialect: str, version: str) -> Edge:
        return detect.make_edge(dialect, self.upstream, self.settings, self.credentials_path, version,
                                v3_task_types=self.v3_task_types)

    def start(self) -> None:
        self.hub_monitor = HubMonitor(self.stats).start()
        # Orphaned grandchildren of renders become our children, so an abort
        # can still find them and gevent reaps them.
        enable_subreaper()
        if self.settings.fetch_task_interval > IDLE_MAX:
            log.warning("fetch_task_interval = %g s would let the Manager time this worker out; "
                        "an idle worker asks every %g s instead", self.settings.fetch_task_interval, IDLE_MAX)
        self.metrics_server = metrics.from_settings(self.settings, self.stats)
        if not self.choice.chosen:
            asked: list[tuple[str, str]] = []
            if not self._retrying("asking the Manager's version",
                                  lambda: asked.append(detect.choose(self.upstream, self.settings))):
                return
            self.choice.choose(self._new_edge(*asked[-1]))
        edge = self.edge
        self.queue.set_dialect(edge.dialect)  # the queue sends only rows of this generation
        self.stats.manager_protocol, self.stats.manager_version = edge.dialect, edge.manager_version
        log.info("Manager %s: protocol %s%s", self.settings.manager_url, edge.dialect,
                 f", version {edge.manager_version}" if edge.manager_version else "")
        if self.on_manager_known is not None:
            self.on_manager_known()
        self._spawn_linked(self.flusher.run, "queue flusher")
        requested: list[str | None] = []
        if self._retrying("sign-on", lambda: requested.append(self._establish())):
            self._enter_requested(requested[-1], "started")

    def _establish(self) -> str | None:
        # From the first try on the Manager may count this worker signed on, even
        # if its answer never arrives: shutdown() signs off.
        self._signing_on = True
        return self.edge.establish(self.reregister)

    def run_once(self) -> None:
        """One step: a fetch (and the task it brings), or one poll or wait."""
        if self.shutdown_reason is not None:
            return
        if self.local_request is not None:
            state, self.local_request = self.local_request, None
            self.machine.change(state, "local signal")
        elif self.machine.state is State.ERROR:
            if not self.pre_task.recovered():
                self._poll_status_change()
        elif not self.machine.working:
            self._poll_status_change()
        elif not self.pre_task.passes():
            return
        elif self._reauth:
            self._reauth = False
            self._sign_on_again()
        elif len(self.queue):
            # The Manager hands an 'active' task to its worker again until the
            # final status arrives: asking before the queue is drained would
            # run the last task twice.  A backlog also means the Manager is
            # slow or away, no time to take more work.
            self.wait_for_flush(max(self.settings.fetch_task_interval, 0.5))
            if len(self.queue):
                log.info("%d update(s) still to be sent; taking no new task until they are", len(self.queue))
        else:
            self._fetch()

    # Running a task.

    def run_task(self, task: Task) -> Outcome:
        log.info("task %s (%s, %s): %d command(s)", task.id, task.name, task.task_type, len(task.commands))
        local_log = self.task_logs.open(task.id)
        on_output = functools.partial(self.output.add, task_id=task.id)
        self.runner = TaskRunner(task, self.queue, self.settings, on_output=on_output,
                                 events=self.events, local_log=local_log, dialect=self.edge.dialect,
                                 announced=self.edge.task_types())
        self.stats.task_id, self.stats.task_progress = task.id, 0
        self.events.emit("task_started", task_id=task.id, name=task.name)
        self._aborting = False
        greenlet = self.runner_greenlet = gevent.spawn(self.runner.run)
        greenlet.link(lambda _: self.wakeup.set())
        interval = min(self.settings.may_i_run_interval, self.edge.may_i_run_max)
        poller = MayIRunPoller(self.choice, task.id, interval, self._stop_task,
                               on_request=self.status.note_lazy).start()
        try:
            outcome = self._supervise(greenlet)
        finally:
            poller.kill()
            local_log.close()
            self.runner = self.runner_greenlet = None
            self.stats.task_id = None
        if outcome is Outcome.RETURNED and self.edge.can_give_back:
            self._give_back(task)
        self.last_outcome = outcome
        counter = _OUTCOME_COUNTERS[outcome]
        setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        log.info("task %s: %s", task.id, outcome.value)
        self.events.emit("task_finished", task_id=task.id, outcome=outcome.value)
        if self.single:
            self.request_shutdown("single mode: one task done")
        return outcome

    def _supervise(self, greenlet: gevent.Greenlet[..., typing.Any]) -> Outcome:
        """Wait for the runner; stop it if the worker is asked to shut down."""
        while not greenlet.ready():
            self.wakeup.wait()
            self.wakeup.clear()
            if self.shutdown_reason is not None:
                self._abort_task(f"worker shut down: {self.shutdown_reason}", give_back=self.shutdown_gives_back)
        outcome = greenlet.get()
        if not isinstance(outcome, Outcome):
            # Killed before it ran a single line: nothing was reported, give it back.
            log.warning("the task was stopped before it started (%r)", outcome)
            return Outcome.RETURNED
        return outcome

    def _stop_task(self, reason: str, requested: str | None = None) -> None:
        """The Manager said stop (may-i-run): switch to the status it asks
        for, if any, then stop the task and give it back."""
        if requested is not None:
            self.status.apply(requested, "Manager (may-i-run)")
        self._abort_task(reason, give_back=True)

    def _on_task_lost(self, task_id: str, why: str) -> None:
        if self.runner is not None and self.runner.task.id == task_id:
            self._abort_task(f"the Manager refused its updates: {why}", give_back=True)

    def _abort_task(self, reason: str, *, give_back: bool) -> None:
        greenlet = self.runner_greenlet
        # Once only: a second kill would interrupt the first one's clean-up.
        if greenlet is None or greenlet.ready() or self._aborting:
            return
        self._aborting = True
        log.warning("stopping the running task: %s", reason)
        greenlet.kill(Abort(reason, give_back=give_back), block=False)

    def _give_back(self, task: Task) -> None:
        """Send the task's remaining log, then return it."""
        self.wait_for_flush(self.settings.shutdown_flush_timeout)
        try:
            answer = self.edge.return_task(task.id)
        except RetryLater as ex:
            log.warning("could not return task %s (the Manager re-queues it on sign-off or timeout): %s", task.id, ex)
            return
        if answer.status == 204:
            log.info("task %s returned to the Manager", task.id)
        elif answer.status == 404:
            log.info("task %s not returned: the Manager no longer knows it", task.id)
        else:
            log.warning("returning task %s: Manager answered %d %s", task.id, answer.status,
                        answer.text.strip()[:200])

    def _working_state(self) -> State:
        return State.TESTING if self.test_mode else State.AWAKE

    # Bookkeeping.

    def _state_changed(self, old: State, new: State) -> None:
        if new not in (State.AWAKE, State.TESTING):
            warmblender.stop_all(f"the worker is {new.value}")  # asleep, offline, shutting down
        self.stats.state = new.value
        self.events.emit("state_changed", old=old.value, new=new.value)

    def _follow_in_stats(self) -> None:
        """/health and /metrics read the queue and the last answer live: an idle
        worker and a worker whose Manager is away must not show old numbers."""
        started = time.monotonic()
        upstream = self.upstream

        def silent() -> float:
            return time.monotonic() - (upstream.answered_monotonic or started)

        self.stats.follow(queue_depth=lambda: len(self.queue), oldest_update_age=self.queue.oldest_age,
                          last_manager_contact=lambda: upstream.answered_at, manager_silent_seconds=silent)
        self.stats.silence_limit = silence_limit(self.settings)

    def _delivered(self, batch: typing.Any) -> None:
        self.stats.delivered(batch.task_id, batch.payload, len(batch.ids), queue_depth=len(self.queue),
                             retries=self.flusher.retries)
        self.events.emit("update_delivered", task_id=batch.task_id, count=len(batch.ids))

    # Shutting down.

    def shutdown(self) -> None:
        """Stop cleanly, whatever asked for it: a signal, the Manager, the end of
        ``--single``, a fatal error.  Only the first call does anything.  The task loop
        has ended: a running task was failed (a signal) or given back (the Manager).
        Tell the state machine (``shutdown`` is never acknowledged), send what is queued
        for a while, stop the helpers, report the last output, and sign off, so that the
        Manager re-queues anything of ours still active."""
        if self._stopped:
            return
        self._stopped = True
        self.machine.change(State.SHUTDOWN, self.shutdown_reason or "stopping")
        # Only a flusher that runs can send what is queued: none before the edge is
        # chosen, nor when start() failed before it started one (chosen or not).
        if self.helpers:
            self.wait_for_flush(self.settings.shutdown_flush_timeout)
        for greenlet in self.helpers:
            greenlet.unlink_all()  # their end is expected now, not a reason to shut down
        self.flusher.stop()
        gevent.killall(self.helpers, timeout=5)
        warmblender.stop_all("the worker shuts down")
        self.output.flush()
        self.edge.close()
        if len(self.queue):
            log.warning("%d update(s) not sent; they stay queued in %s for the next start",
                        len(self.queue), self.queue.path)
        # Only the chosen edge signs on, so only it signs off; nothing before it tried.
        if self._signing_on and self.upstream.worker_id:
            try:
                log.info("signed off (%d)", self.edge.sign_off().status)
            except RetryLater as ex:
                log.warning("could not sign off: %s", ex)
        self.queue.close()
        if self.metrics_server is not None:
            self.metrics_server.stop()
        if self.hub_monitor is not None:
            self.hub_monitor.stop()

    def wait_for_flush(self, timeout: float) -> bool:
        """Wait until the queue is empty or ``timeout`` passes; True if empty."""
        return self.flusher.wait_drained(timeout)

    # Helpers.

    def _spawn_linked(self, fn: typing.Callable[[], None], what: str) -> None:
        greenlet = gevent.spawn(fn)
        greenlet.link(lambda g: self._greenlet_died(g, what))
        self.helpers.append(greenlet)

    def _greenlet_died(self, greenlet: gevent.Greenlet[..., typing.Any], what: str) -> None:
        log.error("the %s stopped unexpectedly: %r; shutting down", what, greenlet.exception)
        self.request_shutdown(f"{what} died")

    def _updates_unauthorized(self) -> None:
        # Called from the flusher: only record it; the loop signs on again.
        self._reauth = True
        self.wakeup.set()


def silence_limit(settings: config.Settings) -> float:
    """How long the Manager may stay silent (or a queued update wait) before
    the worker calls itself unhealthy: twice the longest a working worker
    goes between two answers (its slowest regular request, a backoff at its
    longest, each plus a request's whole deadline)."""
    between = max(min(settings.fetch_task_interval, IDLE_MAX), settings.may_i_run_interval, settings.backoff_max)
    return 2 * (between + settings.http_timeout)

