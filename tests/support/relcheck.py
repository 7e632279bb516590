"""Did every update the worker produced reach the Manager, once and in order?

``produced`` is the worker's journal: every update committed to its queue, in order
(``journaled_worker.py``).  ``applied`` is every update request the Manager accepted
(``204``), in the order the fault-injecting proxy forwarded them.  The flusher sends the
head of the queue, coalescing consecutive updates of one task (logs joined with a line
break, metrics merged, the newest activity, progress and status kept, nothing after a
final status), so each request must be the coalescence of the next run of produced
updates.  A request may repeat the previous one (as the same run,
or that run extended by what was queued meanwhile) only where the worker cannot have
known that the previous one arrived: its response was lost (``slow``, ``drop``), or the
worker was killed and restarted in between.  Anything else is a loss, a reordering or an
unexplained duplicate.

The queue holds the same (dialect-free) updates whichever the Manager, and the edge
encodes each coalesced run when it sends it: ``check(..., encode)`` compares that
encoding with the request (``encode_v2``: the update without the task-wide step count, which
a 2.x Manager does not know; ``encode_v3``: a Flamenco 3 TaskUpdate).  An update carrying
nothing the Manager's protocol has (a step count alone for 2.x; progress percentages or
metrics alone for Flamenco 3) is never sent on its own; it is left out of ``produced`` and
counted in ``unsendable``.
"""
from __future__ import annotations

import dataclasses
import typing


@dataclasses.dataclass
class Delivery:
    produced: int = 0
    delivered: int = 0  # produced updates the Manager received (at least once)
    duplicates: int = 0  # produced updates the Manager received a second time
    lost: int = 0
    unsendable: int = 0  # updates with nothing the protocol carries (not in produced)
    problems: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Request:
    """One update request the Manager accepted."""

    index: int
    task_id: str
    body: dict
    response_lost: bool
    generation: int  # worker restarts before it was sent


@dataclasses.dataclass(frozen=True)
class _Reading:
    """One way of explaining the requests so far as runs of produced updates."""

    position: int  # produced updates delivered so far
    start: int  # the run the last request stands for: produced[start:position]
    request: Request | None
    duplicates: int


Encoder = typing.Callable[[dict], dict]


def check(produced: list[tuple[str, dict]], applied: list[Request], encode: Encoder | None = None) -> Delivery:
    """``encode``: how the worker turns a coalesced update into a request body
    (``encode_v2``, ``encode_v3``); None: sent as it is."""
    # The same request body can stand for runs of different lengths (an update
    # that repeats the newest activity changes nothing), so every reading is
    # followed until the requests rule it out.
    unsendable = 0
    if encode is not None:
        sendable = [(task_id, payload) for task_id, payload in produced if encode(payload)]
        unsendable, produced = len(produced) - len(sendable), sendable
    readings = [_Reading(0, 0, None, 0)]
    result = Delivery(produced=len(produced), unsendable=unsendable)
    for request in applied:
        following: dict[tuple[int, int], _Reading] = {}
        for reading in readings:
            for nxt in _next_readings(produced, reading, request, encode or _as_is):
                following.setdefault((nxt.position, nxt.start), nxt)
        if not following:
            best = max(readings, key=lambda r: r.position)
            result.problems.append(
                f"request #{request.index} (task {request.task_id}) is not the next run of "
                f"produced updates (position {best.position} of {len(produced)}): "
                f"{_short(request.body)}; next produced: {_short(produced[best.position:best.position + 2])}")
            break
        readings = sorted(following.values(), key=lambda r: (-r.position, r.duplicates))[:_MAX_READINGS]
    best = min(readings, key=lambda r: (-r.position, r.duplicates))
    result.delivered, result.duplicates = best.position, best.duplicates
    result.lost = len(produced) - best.position
    return result


_MAX_READINGS = 1000


def _as_is(payload: dict) -> dict:
    return payload


def encode_v2(payload: dict) -> dict:
    """A coalesced update as a 2.x edge sends it: without ``steps_completed``."""
    return {key: value for key, value in payload.items() if key != "steps_completed"}


def encode_v3(payload: dict) -> dict:
    """A coalesced update as a Flamenco 3 TaskUpdate (docs/PROTOCOL.md §8): the status
    as ``taskStatus`` (soft-failed is the Manager's to decide, never sent), the
    activity, the log with every line ended (the Manager appends it as it comes), the
    task-wide step count; nothing else."""
    body: dict[str, typing.Any] = {}
    if payload.get("task_status") not in (None, "soft-failed"):
        body["taskStatus"] = payload["task_status"]
    if "activity" in payload:
        body["activity"] = payload["activity"]
    if payload.get("log"):
        body["log"] = payload["log"] if payload["log"].endswith("\n") else payload["log"] + "\n"
    if "steps_completed" in payload:
        body["steps_completed"] = payload["steps_completed"]
    return body


def _next_readings(produced: list[tuple[str, dict]], reading: _Reading,
                   request: Request, encode: Encoder) -> typing.Iterator[_Reading]:
    for end in _coalesced_ends(produced, reading.position, request, encode):
        yield _Reading(end, reading.position, request, reading.duplicates)
    previous = reading.request
    if previous is not None and _may_repeat(previous, request):
        for end in _coalesced_ends(produced, reading.start, request, encode, at_least=reading.position):
            yield _Reading(end, reading.start, request, reading.duplicates + reading.position - reading.start)


def _may_repeat(previous: Request, request: Request) -> bool:
    return previous.response_lost or previous.generation < request.generation


# What a request may stand for (docs/PROTOCOL.md §3.4: an update is applied as a whole, the
# task keeps the newest of these, logs append, metrics merge by key and timing
# phase).  Written apart from fworker.flusher on purpose: this is the contract
# the flusher's coalescing is checked against.
_NEWEST = {"activity", "task_progress_percentage", "current_command_idx", "command_progress_percentage",
           "task_status", "steps_completed"}
_FINAL = {"completed", "failed", "canceled"}


def _coalesced_ends(produced: list[tuple[str, dict]], start: int, request: Request, encode: Encoder,
                    at_least: int = 0) -> typing.Iterator[int]:
    """Every end of a run from ``start`` whose coalescence is the request's body."""
    merged: dict[str, typing.Any] | None = None
    for index in range(start, len(produced)):
        task_id, payload = produced[index]
        if task_id != request.task_id:
            return
        if merged is None:
            merged = dict(payload)
        elif not _merge(merged, payload):
            return
        if encode(merged) == request.body and index + 1 >= at_least:
            yield index + 1


def _merge(merged: dict, payload: dict) -> bool:
    """Merge ``payload`` into ``merged``; False when the two cannot be one request."""
    if merged.get("task_status") in _FINAL:
        return False
    for key in payload:
        if key in merged and key not in _NEWEST | {"log", "metrics"}:
            return False
    for key, value in payload.items():
        if key == "log" and "log" in merged:
            merged["log"] = merged["log"] + "\n" + value
        elif key == "metrics" and "metrics" in merged:
            timing = {**merged["metrics"].get("timing", {}), **value.get("timing", {})}
            merged["metrics"] = {**merged["metrics"], **value}
            if timing:
                merged["metrics"]["timing"] = timing
        else:
            merged[key] = value
    return True


class Forwarded(typing.Protocol):
    """A request the proxy forwarded (``faults.Exchange``)."""

    body: typing.Any
    forwarded_at: float | None
    answered_at: float | None


def records_problem(recorded: list[typing.Any], forwarded: typing.Sequence[Forwarded]) -> str:
    """Does the Manager's record of accepted updates hold exactly the requests the proxy
    forwarded, in the order forwarded?  Two requests in flight at the Manager at the same
    time (the worker gave up on one and sent the next) may be applied in either order:
    a later request may be recorded before an earlier one only if the earlier one's
    answer had not come back when the later one was forwarded.  '' when they match."""
    pending = list(forwarded)
    for number, body in enumerate(recorded):
        index = next((i for i, x in enumerate(pending) if x.body == body), None)
        if index is None:
            return f"the Manager recorded update {number} ({_short(body)}), which the proxy did not forward"
        if any(_answered_before(y, pending[index]) for y in pending[:index]):
            return (f"the Manager recorded update {number} ({_short(body)}) before one forwarded earlier, "
                    "whose answer had come back before this one was sent")
        del pending[index]
    if pending:
        return f"{len(pending)} forwarded update(s) the Manager did not record, the first {_short(pending[0].body)}"
    return ""


def _answered_before(earlier: Forwarded, later: Forwarded) -> bool:
    return (earlier.answered_at is not None and later.forwarded_at is not None
            and earlier.answered_at <= later.forwarded_at)


def _short(value: typing.Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
