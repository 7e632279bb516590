"""Greenlets that run beside a task: the may-i-run poller (the Manager's
abort channel) and the throttle for produced-output reports."""
from __future__ import annotations

import logging
import time
import typing

import gevent

from fworker.edge.base import Edge
from fworker.errors import RetryLater

log = logging.getLogger(__name__)


class MayIRunPoller:
    """Asks ``GET /may-i-run/{task}`` every ``interval`` seconds.  On a
    ``false`` answer calls ``stop(reason, status_requested)`` once and ends;
    a ``true`` answer that carries a (lazy) status request goes to
    ``on_request``.  A failed or malformed answer is logged and asked again:
    only the Manager's explicit ``false`` may stop a task.  ``start()`` links
    the greenlet, so that a bug in here is logged and the poller restarted
    instead of the abort channel going quiet."""

    def __init__(self, upstream: Edge, task_id: str, interval: float,
                 stop: typing.Callable[[str, str | None], None],
                 on_request: typing.Callable[[str], None] | None = None):
        self.upstream = upstream
        self.task_id = task_id
        self.interval = interval
        self.stop = stop
        self.on_request = on_request
        self.stopped = False
        self.restarts = 0
        self._greenlet: gevent.Greenlet[..., typing.Any] | None = None

    def start(self) -> MayIRunPoller:
        self._greenlet = gevent.spawn(self.run)
        self._greenlet.link_exception(self._died)
        return self

    def kill(self) -> None:
        self.stopped = True
        if self._greenlet is not None:
            self._greenlet.unlink_all()
            self._greenlet.kill()

    def _died(self, greenlet: gevent.Greenlet[..., typing.Any]) -> None:
        log.error("may-i-run poller of task %s crashed: %r; starting it again", self.task_id, greenlet.exception)
        if not self.stopped:
            self.restarts += 1
            self.start()

    def run(self) -> None:
        while not self.stopped:
            gevent.sleep(self.interval)
            self.run_once()

    def run_once(self) -> None:
        try:
            answer = self.upstream.may_i_run(self.task_id)
        except RetryLater as ex:
            log.warning("may-i-run for task %s: %s", self.task_id, ex)
            return
        body = answer.body
        if answer.status != 200 or not isinstance(body, dict) or not isinstance(body.get("may_keep_running"), bool):
            log.warning("may-i-run for task %s: unexpected answer %d %r", self.task_id, answer.status,
                        answer.text.strip()[:200])
            return
        requested = body.get("status_requested") or None
        if body["may_keep_running"]:
            if requested and self.on_request is not None:
                self.on_request(requested)
            return
        reason = str(body.get("reason") or "no reason given")
        log.warning("the Manager says task %s may not keep running: %s", self.task_id, reason)
        self.stopped = True
        self.stop(f"the Manager says stop: {reason}", requested)


class OutputThrottle:
    """Reports produced files to ``POST /output-produced`` at most once per
    ``interval``, keeping the newest paths when several arrive in between.
    Sending happens in its own greenlet: it never blocks the task."""

    KEEP = 10  # the Manager shows only the latest few

    def __init__(self, upstream: Edge, interval: float):
        self.upstream = upstream
        self.interval = interval
        self._paths: list[str] = []
        self._task_id = ""  # the task the pending paths are of
        self._last_sent = float("-inf")
        self._sender: gevent.Greenlet[..., typing.Any] | None = None
        self.sent_calls = 0

    def add(self, paths: list[str], task_id: str = "") -> None:
        if task_id != self._task_id:
            self._paths, self._task_id = [], task_id  # another task's images are not this one's news
        # A path reported again moves to the end: it is the newest now.
        kept = [p for p in self._paths if p not in paths]
        self._paths = (kept + list(dict.fromkeys(paths)))[-self.KEEP:]
        if self._sender is None or self._sender.ready():
            self._sender = gevent.spawn(self._send_while_pending)

    def flush(self) -> None:
        """Send what is pending now (at shutdown), throttle or not."""
        if self._sender is not None:
            self._sender.kill()
        if self._paths:
            self._send()

    def _send_while_pending(self) -> None:
        # Loop: paths that arrive while a report is on its way go out with
        # the next one instead of waiting for some later add().
        while self._paths:
            gevent.sleep(max(0.0, self._last_sent + self.interval - time.monotonic()))
            self._send()

    def _send(self) -> None:
        paths, self._paths = self._paths, []
        try:
            answer = self.upstream.output_produced(self._task_id, paths)
        except RetryLater as ex:
            # Fire and forget: a missed preview is not worth a retry queue.
            log.warning("could not report produced output %s: %s", paths, ex)
            return
        finally:
            # The interval counts from the end of a call: a slow request must
            # not let the next one reach the Manager right behind it.
            self._last_sent = time.monotonic()
        self.sent_calls += 1
        if answer.status not in (202, 204):
            log.warning("output-produced: Manager answered %d %s", answer.status, answer.text.strip()[:200])
