"""Greenlets that run beside a task: the may-i-run poller (the Manager's
abort channel) and the throttle for produced-output reports."""
from __future__ import annotations

import logging
import time
import typing

import gevent
import gevent.event

from fworker.errors import RetryLater
from fworker.upstream import Upstream

log = logging.getLogger(__name__)


class MayIRunPoller:
    """Asks ``GET /may-i-run/{task}`` every ``interval`` seconds.  On a
    ``false`` answer calls ``stop(reason, status_requested)`` once and ends.
    A failed or malformed answer is logged and asked again: it never ends
    the poller, since only the Manager's explicit ``false`` may stop a task."""

    def __init__(self, upstream: Upstream, task_id: str, interval: float,
                 stop: typing.Callable[[str, str | None], None],
                 on_request: typing.Callable[[str], None] | None = None):
        self.upstream = upstream
        self.task_id = task_id
        self.interval = interval
        self.stop = stop
        self.on_request = on_request
        self.stopped = False

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
        reason = body.get("reason") or "no reason given"
        log.warning("the Manager says task %s may not keep running: %s", self.task_id, reason)
        self.stopped = True
        self.stop(f"the Manager says stop: {reason}", requested)


class OutputThrottle:
    """Reports produced files to ``POST /output-produced`` at most once per
    ``interval``, keeping the newest paths when several arrive in between.
    Sending happens in its own greenlet: it never blocks the task."""

    KEEP = 10  # the Manager shows only the latest few

    def __init__(self, upstream: Upstream, interval: float):
        self.upstream = upstream
        self.interval = interval
        self._paths: list[str] = []
        self._last_sent = float("-inf")
        self._sender: gevent.Greenlet | None = None
        self.sent_calls = 0

    def add(self, paths: list[str]) -> None:
        self._paths = (self._paths + [p for p in paths if p not in self._paths])[-self.KEEP:]
        if self._sender is None or self._sender.ready():
            self._sender = gevent.spawn(self._send_when_due)

    def flush(self) -> None:
        if self._sender is not None:
            self._sender.kill()
        if self._paths:
            self._send()

    def _send_when_due(self) -> None:
        gevent.sleep(max(0.0, self._last_sent + self.interval - time.monotonic()))
        self._send()

    def _send(self) -> None:
        paths, self._paths = self._paths, []
        self._last_sent = time.monotonic()
        try:
            answer = self.upstream.output_produced(paths)
            self.sent_calls += 1
            if answer.status != 204:
                log.warning("output-produced: Manager answered %d %s", answer.status, answer.text.strip()[:200])
        except RetryLater as ex:
            # Fire and forget: a missed preview is not worth a retry queue.
            log.warning("could not report produced output %s: %s", paths, ex)
