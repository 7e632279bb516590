"""The queue flusher: sends queued task updates to the Manager, in order.

``run()`` loops over ``run_once()``, which sends one batch from the head of
the queue.  Consecutive updates of one task are coalesced into one request
whose effect on the Manager is that of sending them one by one (see
``coalesce``): a backlog of one task's progress goes out in a few requests,
not one per update.
"""
from __future__ import annotations

import logging
import time
import typing

import gevent
import gevent.event

from fworker.edge.base import Edge
from fworker.errors import RetryLater, retry_after
from fworker.queue import QueuedUpdate, UpdateQueue
from fworker.upstream import Backoff

log = logging.getLogger(__name__)

# A coalesced request stays below this much log text, whatever the backlog.
MAX_COALESCED_LOG = 1_000_000
# Updates read from the queue at a time stay below this much JSON (plus one):
# a backlog of 256 KiB log updates, 200 at a time, made the worker's RSS 150 MB.
HEAD_BYTES = 2 * MAX_COALESCED_LOG
# A 400 may come from a proxy mangling one request; after this many the
# update is set aside in the rejected table instead of blocking the queue.
MAX_BAD_REQUEST_TRIES = 3
# How long wait_drained sleeps when nothing would wake it (see there).
DRAIN_POLL = 0.1


class Batch(typing.NamedTuple):
    task_id: str
    payload: dict[str, typing.Any]
    ids: list[int]


def coalesce(items: list[QueuedUpdate]) -> list[Batch]:
    """Merge runs of consecutive updates of one task into single requests.

    The Manager applies an update as a whole and keeps only the newest value
    of a task's activity and progress fields, appends its log and merges its
    metrics; so one request carrying the newest values, the joined log and the
    merged metrics leaves it exactly as the run sent one by one would.
    Statuses only move forward within a request: ``active`` may be followed by
    a final status, and nothing is merged after a final status (it ends the
    task).  Fields without such a rule may appear in one update of a run only.
    """
    runs: list[_Run] = []
    for item in items:
        if not (runs and runs[-1].take(item)):
            runs.append(_Run(item))
    return [run.batch() for run in runs]


# The Manager keeps only the newest value of each of these (``steps_completed``, the
# task-wide cumulative count, only a Flamenco 3 Manager knows; the newest is the count).
NEWEST_WINS = frozenset(("activity", "task_progress_percentage", "current_command_idx",
                         "command_progress_percentage", "steps_completed"))
FINAL_STATUSES = frozenset(("completed", "failed", "canceled"))
_KNOWN = NEWEST_WINS | {"log", "metrics", "task_status"}


class _Run:
    """Consecutive updates of one task, merged as they are taken."""

    def __init__(self, item: QueuedUpdate):
        self.task_id = item.task_id
        self.ids = [item.id]
        self.payload = {key: value for key, value in item.payload.items() if key != "log"}
        self.logs = [item.payload["log"]] if "log" in item.payload else []
        self.log_size = len(item.payload.get("log", ""))

    def take(self, item: QueuedUpdate) -> bool:
        """Merge ``item`` into this run; False when it must start a run of its own."""
        new = item.payload
        if item.task_id != self.task_id or self.payload.get("task_status") in FINAL_STATUSES:
            return False
        if (set(self.payload) - _KNOWN) & (set(new) - _KNOWN):
            return False
        if self.logs and self.log_size + len(new.get("log", "")) > MAX_COALESCED_LOG:
            return False
        for key, value in new.items():
            if key == "log":
                self.logs.append(value)
                self.log_size += len(value)
            elif key == "metrics" and isinstance(self.payload.get(key), dict) and isinstance(value, dict):
                self.payload[key] = _merged_metrics(self.payload[key], value)
            else:
                self.payload[key] = value
        self.ids.append(item.id)
        return True

    def batch(self) -> Batch:
        payload = dict(self.payload)
        if self.logs:
            payload["log"] = "\n".join(self.logs)
        return Batch(self.task_id, payload, self.ids)


def _merged_metrics(old: dict[str, typing.Any], new: dict[str, typing.Any]) -> dict[str, typing.Any]:
    # As the Manager merges them: newer keys win, timing phases by name.
    merged = {**old, **new}
    if isinstance(old.get("timing"), dict) and isinstance(new.get("timing"), dict):
        merged["timing"] = {**old["timing"], **new["timing"]}
    return merged


class Flusher:
    def __init__(self, queue: UpdateQueue, upstream: Edge, *, backoff: Backoff,
                 on_task_lost: typing.Callable[[str, str], None],
                 on_unauthorized: typing.Callable[[], None] | None = None,
                 on_delivered: typing.Callable[[Batch], None] | None = None,
                 batch_size: int = 200):
        self.queue = queue
        self.upstream = upstream
        self.backoff = backoff
        self.on_task_lost = on_task_lost
        self.on_unauthorized = on_unauthorized
        self.on_delivered = on_delivered
        self.batch_size = batch_size
        self.stopping = gevent.event.Event()
        self.idle = gevent.event.Event()  # set while the queue is empty
        self.sent = 0  # updates accepted by the Manager, for tests and metrics
        self.retries = 0  # failed attempts to send, for metrics
        self._bad_request_tries: dict[int, int] = {}

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                progressed = self.run_once()
            except RetryLater as ex:
                self.retries += 1
                delay = max(self.backoff.next_delay(), retry_after(ex))
                log.warning("cannot send task updates (%d queued), retrying in %.1fs: %s", len(self.queue), delay, ex)
                self.stopping.wait(delay)
                continue
            if not progressed:
                self.idle.set()
                self.queue.pushed.wait()
                self.queue.pushed.clear()

    def run_once(self) -> bool:
        """Send one batch; False when the queue was empty."""
        # Updates that had to wait in memory go to disk first, once it can be
        # written again: now, while no batch of them is being sent.
        self.queue.write_pending()
        items = self.queue.head(self.batch_size, max_bytes=HEAD_BYTES)
        if not items:
            return False
        self.idle.clear()
        for batch in coalesce(items):
            self._send(batch, items)
        return True

    def wait_drained(self, timeout: float) -> bool:
        """Wait until the queue is empty or ``timeout`` passes; True if empty.

        Every turn blocks: an Event that is set returns from wait() without
        yielding, so waiting on ``idle`` while it is set would spin and starve
        the very greenlet that could drain the queue (and the signal handlers).
        ``idle`` is still set after a push until this greenlet has run, and
        stays set if it has stopped: then a short sleep lets it run."""
        deadline = time.monotonic() + timeout
        while len(self.queue):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self.idle.is_set():
                gevent.sleep(min(left, DRAIN_POLL))
            else:
                self.idle.wait(min(left, DRAIN_POLL))
        return True

    def stop(self) -> None:
        self.stopping.set()
        self.queue.pushed.set()  # wake run() if it waits for work

    def _send(self, batch: Batch, items: list[QueuedUpdate]) -> None:
        answer = self.upstream.send_update(batch.task_id, batch.payload)
        if answer.status == 204:
            self.queue.delete(batch.ids)
            self.sent += len(batch.ids)
            self.backoff.reset()
            if self.on_delivered is not None:
                self.on_delivered(batch)
        elif answer.status == 404 and self.upstream.drops_task_on_404:
            # Flamenco 3: the task (its job) is gone; each of its queued updates would
            # get the same 404, and retrying any of them would block the queue forever.
            # delete_task takes this batch's rows with the rest of the task's.
            dropped = self.queue.delete_task(batch.task_id)
            log.warning("the Manager no longer knows task %s (404 %s); dropped %d queued update(s) of it",
                        batch.task_id, answer.text.strip()[:200], dropped)
            self.on_task_lost(batch.task_id, answer.text.strip())
        elif answer.status in (404, 409):
            log.warning("Manager will never accept updates of task %s (%d %s); dropping %d update(s)",
                        batch.task_id, answer.status, answer.text.strip(), len(batch.ids))
            self.queue.delete(batch.ids)
            self.on_task_lost(batch.task_id, answer.text.strip())
        elif answer.status == 400:
            self._bad_request(batch, items, answer.text.strip())
        elif answer.status == 401:
            if self.on_unauthorized is not None:
                self.on_unauthorized()
            raise RetryLater(f"update of task {batch.task_id}: 401 Unauthorized")
        else:
            raise RetryLater(f"update of task {batch.task_id}: unexpected answer {answer.status} {answer.text.strip()!r}")

    def _bad_request(self, batch: Batch, items: list[QueuedUpdate], answer: str) -> None:
        if len(batch.ids) > 1:
            # Send the parts one by one so that only the bad one is set aside.
            for item in items:
                if item.id in batch.ids:
                    self._send(Batch(item.task_id, item.payload, [item.id]), items)
            return
        item_id = batch.ids[0]
        tries = self._bad_request_tries.get(item_id, 0) + 1
        self._bad_request_tries[item_id] = tries
        if tries < MAX_BAD_REQUEST_TRIES:
            raise RetryLater(f"update of task {batch.task_id} refused (400 {answer}), try {tries}")
        item = next(i for i in items if i.id == item_id)
        log.error("Manager cannot decode update %d of task %s (400 %s); moved to the rejected_updates table of %s",
                  item_id, batch.task_id, answer, self.queue.path)
        self.queue.reject(item, f"400 {answer}")
        del self._bad_request_tries[item_id]
