"""The worker loop's conversation with the Manager while it takes no task: asking
for one (``_fetch``) and taking it (``_accept``), polling for status changes
while asleep or in error, signing on again, and how every failed exchange
waits (``_back_off``, capped below the Manager's one-minute liveness limit)
and can be cut short by a shutdown request (``_ask``, ``_wait``).

``Conversation`` is a part of ``fworker.worker.Worker`` (its base class): it
uses the worker's state declared below, and ``run_task`` and
``_working_state``, which the Worker defines.
"""
from __future__ import annotations

import logging
import random
import typing

import gevent.event

from fworker import config
from fworker.edge.base import V3, Edge
from fworker.errors import RetryLater, retry_after
from fworker.queue import UpdateQueue
from fworker.states import State, StateMachine
from fworker.statuschange import StatusChanges
from fworker.task import BadTask, Task
from fworker.upstream import Backoff, Killable

log = logging.getLogger(__name__)

# The Manager marks an awake worker that is silent for a minute as timed out
# and takes its tasks back: an idle worker asks at least this often, whatever
# fetch_task_interval says, leaving room for a slow answer or two.
IDLE_MAX = 20.0

T = typing.TypeVar("T")


class Conversation:
    """Asking the Manager for work and for status changes (see the module's text)."""

    # The Worker's, set in its __init__.
    settings: config.Settings
    queue: UpdateQueue
    backoff: Backoff
    status: StatusChanges
    machine: StateMachine
    wakeup: gevent.event.Event
    shutdown_reason: str | None
    test_mode: bool
    _asking: Killable | None = None  # the loop's exchange with the Manager in flight (see _ask)

    @property
    def edge(self) -> Edge:
        raise NotImplementedError  # the Worker's

    def run_task(self, task: Task) -> object:
        raise NotImplementedError  # the Worker's

    def _working_state(self) -> State:
        raise NotImplementedError  # the Worker's

    def _enter_requested(self, requested: str | None, reason: str) -> None:
        """After a sign-on: the state the Manager asked for (v3), acknowledged
        even if the worker is in it already; else the working state."""
        if requested is None:
            self.machine.change(self._working_state(), reason)
        elif requested == "awake" and self.test_mode:
            self.machine.change(State.TESTING, reason)
        else:
            self.status.apply(requested, f"Manager ({reason})")

    def _fetch(self) -> None:
        # The backoff only starts over once the Manager answered as the
        # protocol says (a valid task, 204, a well-formed 423): any other
        # answer, however quick, must not make the worker ask at full speed.
        try:
            answer = self._ask(self.edge.fetch_task)
        except RetryLater as ex:
            return self._back_off(ex)
        self.machine.catch_up()
        if answer.status == 200:
            return self._accept(answer.body)
        if answer.status == 204:
            self.backoff.reset()
            return self._wait(self._idle_delay())
        if answer.status == 423 and self.status.apply_answer(answer.body, "Manager (on task fetch)"):
            self.backoff.reset()
            if self.machine.working:
                # Still asked to work (a repeated request): no hammering.
                self._wait(self._idle_delay())
            return None
        if answer.status == 401:
            # Signing on is not a success until /task works again: a Manager
            # that takes the sign-on and refuses the task is asked less and less.
            self._back_off(RetryLater("the Manager refused this worker's credentials (401)"))
            return self._sign_on_again()
        if answer.status == 409 and self.edge.dialect == V3:
            # The Manager does not think this worker is awake (it timed us out,
            # or missed the acknowledgement): say so again, then ask again.
            log.warning("the Manager says this worker is not awake (409); acknowledging %s again", self.machine.state)
            self.machine.change(self.machine.state, "Manager answered 409", asked=True)
            return self._back_off(RetryLater("409: the Manager did not think this worker was awake"))
        self._back_off(RetryLater(f"asking for a task: Manager answered {answer.status} {answer.text.strip()[:200]!r}"))

    def _poll_status_change(self) -> None:
        """Asleep or in error: no work, but keep talking, so the Manager can
        wake (or shut down) this worker and does not think it gone."""
        try:
            answer, applied = self._ask(self.status.poll)
        except RetryLater as ex:
            return self._back_off(ex, "polling for status changes")
        self.machine.catch_up()
        if answer.status == 401:
            self._back_off(RetryLater("the Manager refused this worker's credentials (401)"),
                           "polling for status changes")
            return self._sign_on_again()
        if answer.status == 204 or applied:
            self.backoff.reset()
            if not self.machine.working:
                self._wait(self._idle_delay())
            return None
        self._back_off(RetryLater(f"Manager answered {answer.status} {answer.text.strip()[:200]!r}"),
                       "polling for status changes")

    def _accept(self, body: typing.Any) -> None:
        try:
            task = self.edge.parse_task(body)
        except BadTask as ex:
            log.error("the Manager sent a malformed task: %s", ex)
            if ex.task_id is not None:
                self.queue.push(ex.task_id, {"task_status": "failed", "activity": f"malformed task: {ex}",
                                             "log": f"worker refused a malformed task: {ex}"})
            return self._back_off(RetryLater(str(ex)))
        self.backoff.reset()
        self.run_task(task)

    def _sign_on_again(self) -> None:
        log.warning("the Manager does not recognise this worker's credentials; signing on again")
        requested: list[str | None] = []
        if self._retrying("sign-on", lambda: requested.append(self.edge.sign_on())) and requested[-1] is not None:
            self._enter_requested(requested[-1], "signed on again")

    def _retrying(self, what: str, fn: typing.Callable[[], None]) -> bool:
        """Call ``fn`` until it works (True) or a shutdown is requested (False).
        Its success does not reset the backoff: only the next working fetch
        or poll shows that the Manager accepts what ``fn`` did."""
        while self.shutdown_reason is None:
            try:
                self._ask(fn)
                return True
            except RetryLater as ex:
                self._back_off(ex, what)
        return False

    def _back_off(self, ex: Exception, what: str = "asking for a task") -> None:
        if self.shutdown_reason is not None:
            return  # the loop ends: no wait, and no retry to announce
        delay = max(self.backoff.next_delay(), retry_after(ex))
        log.warning("%s failed, retrying in %.1fs: %s", what, delay, ex)
        self._wait(delay)

    def _ask(self, fn: typing.Callable[[], T]) -> T:
        """``fn()``, the loop's exchange with the Manager, killable by a shutdown
        request: the request's deadline bounds it, but SIGTERM need not wait."""
        if self.shutdown_reason is not None:
            raise RetryLater("not asking the Manager: shutting down")
        self._asking = asking = Killable(fn)
        try:
            return typing.cast(T, asking.result())
        finally:
            self._asking = None

    def _idle_delay(self) -> float:
        return _jitter(min(self.settings.fetch_task_interval, IDLE_MAX))

    def _wait(self, seconds: float) -> None:
        """Sleep, but wake at once for a shutdown request or a local signal."""
        self.wakeup.wait(seconds)
        self.wakeup.clear()


def _jitter(seconds: float) -> float:
    # Spread the requests of many idle workers instead of letting them beat in step.
    return seconds * random.uniform(0.8, 1.2)
