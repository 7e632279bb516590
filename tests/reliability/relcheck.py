"""Did every update the worker produced reach the Manager, once and in order?

``produced`` is the worker's journal: every update committed to its queue, in order
(``journaled_worker.py``).  ``applied`` is every update request the Manager accepted
(``204``), in the order the fault-injecting proxy forwarded them.  The flusher sends the
head of the queue, coalescing consecutive updates of one task (logs joined with a line
break, no other field in two of them), so each request must be the coalescence of the
next run of produced updates.  A request may repeat the previous one (as the same run,
or that run extended by what was queued meanwhile) only where the worker cannot have
known that the previous one arrived: its response was lost (``slow``, ``drop``), or the
worker was killed and restarted in between.  Anything else is a loss, a reordering or an
unexplained duplicate.
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
    problems: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Request:
    """One update request the Manager accepted."""

    index: int
    task_id: str
    body: dict
    response_lost: bool
    generation: int  # worker restarts before it was sent


def check(produced: list[tuple[str, dict]], applied: list[Request]) -> Delivery:
    result = Delivery(produced=len(produced))
    position = 0
    previous: tuple[int, int, Request] | None = None  # (start, end) in produced, and the request
    for request in applied:
        end = _coalesced_end(produced, position, request)
        if end is not None:
            previous, position = (position, end, request), end
            continue
        if previous is not None and _may_repeat(previous[2], request):
            start, old_end, _ = previous
            end = _coalesced_end(produced, start, request, at_least=old_end)
            if end is not None:
                result.duplicates += old_end - start
                previous, position = (start, end, request), end
                continue
        result.problems.append(f"request #{request.index} (task {request.task_id}) is not the next run of "
                               f"produced updates (position {position} of {len(produced)}): "
                               f"{_short(request.body)}; next produced: {_short(produced[position:position + 2])}")
        break
    result.delivered = position
    result.lost = len(produced) - position
    return result


def _may_repeat(previous: Request, request: Request) -> bool:
    return previous.response_lost or previous.generation < request.generation


def _coalesced_end(produced: list[tuple[str, dict]], start: int, request: Request,
                   at_least: int = 0) -> int | None:
    """The end of the longest run from ``start`` whose coalescence is the request's body."""
    merged: dict[str, typing.Any] | None = None
    found = None
    for index in range(start, len(produced)):
        task_id, payload = produced[index]
        if task_id != request.task_id:
            break
        if merged is None:
            merged = dict(payload)
        elif (set(merged) - {"log"}) & (set(payload) - {"log"}):
            break
        else:
            for key, value in payload.items():
                merged[key] = merged["log"] + "\n" + value if key == "log" and "log" in merged else value
        if merged == request.body and index + 1 >= at_least:
            found = index + 1
    return found


def _short(value: typing.Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
