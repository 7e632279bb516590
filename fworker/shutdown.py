"""The worker's clean shutdown sequence, whatever asked for it: SIGTERM or
SIGINT, the Manager's ``shutdown`` request, the end of ``--single``, a fatal
error.

When it runs, the task loop has ended, so a running task has already been
failed (a signal) or given back (the Manager's request).  What is left:
tell the state machine (``shutdown`` is never acknowledged), send what is
queued for a while, stop the helpers, report the last produced output, and
sign off, so that the Manager re-queues anything of ours still active.
A second signal does not wait for any of that: ``exit_at_once``.
"""
from __future__ import annotations

import logging
import os
import typing

import gevent
import psutil

from fworker.errors import RetryLater
from fworker.states import State

if typing.TYPE_CHECKING:
    from fworker.worker import Worker

log = logging.getLogger(__name__)


def run(worker: Worker) -> None:
    worker.machine.change(State.SHUTDOWN, worker.shutdown_reason or "stopping")
    worker.wait_for_flush(worker.settings.shutdown_flush_timeout)
    for greenlet in worker.helpers:
        greenlet.unlink_all()  # their end is expected now, not a reason to shut down
    worker.flusher.stop()
    gevent.killall(worker.helpers, timeout=5)
    worker.output.flush()
    if len(worker.queue):
        log.warning("%d update(s) not sent; they stay queued in %s for the next start",
                    len(worker.queue), worker.queue.path)
    if worker.upstream.worker_id:
        try:
            answer = worker.upstream.sign_off()
            log.info("signed off (%d)", answer.status)
        except RetryLater as ex:
            log.warning("could not sign off: %s", ex)
    worker.queue.close()
    if worker.metrics_server is not None:
        worker.metrics_server.stop()


def exit_at_once(signal_name: str, queue_path: str) -> typing.NoReturn:
    """A second SIGINT or SIGTERM: the operator will not wait for the clean
    sequence.  Kill every child process (a render must not outlive us) and
    exit; what is queued stays on disk for the next start."""
    log.warning("second %s: exiting at once; queued updates stay in %s", signal_name, queue_path)
    for child in psutil.Process().children(recursive=True):
        try:
            child.kill()
        except psutil.Error:
            pass  # already gone: that is what we wanted
    os._exit(130)
