"""The seam between the worker's core and a Manager generation (a dialect).

Every method answers in one neutral form whatever the dialect, an ``Answer``
whose status codes and bodies are those the core has always judged:

- ``fetch_task``: 200 with a task body (``parse_task`` reads it), 204 none,
  423 ``{status_requested}``, 401 "sign on again", 409 "the Manager does not
  think this worker is awake";
- ``send_update``: 204 delivered, 409 "not this worker's task any more" (drop
  the update, stop the task), 404 "the task is gone" (``drops_task_on_404``:
  drop all of its queued updates too), 400 refused, 401 sign on again;
- ``may_i_run``: 200 ``{may_keep_running, reason, status_requested}``;
- ``status_change``: 204, or 200 ``{status_requested}``;
- ``ack_status_change(status)``: 204 when the Manager heard it;
- ``output_produced``: 204 (or 202) taken.

A status request is in the core's words (``fworker.states``): ``awake``,
``asleep``, ``shutdown``; an edge translates its Manager's names.
"""
from __future__ import annotations

import typing

from fworker.task import Task
from fworker.upstream import Answer, Upstream

# The dialects, as named in settings, the queue and the command registry.
V2 = "v2"
V3 = "v3"


class Edge(typing.Protocol):
    # Read-only to the core: an edge's own answers may change some of them (exit_code).
    @property
    def dialect(self) -> str: ...

    @property
    def manager_version(self) -> str:
        """As the Manager said it; "" when it does not say."""

    @property
    def upstream(self) -> Upstream:
        """The HTTP session (credentials, deadlines)."""

    @property
    def shutdown_fails_task(self) -> bool:
        """A clean shutdown (SIGTERM) reports the running task failed (2.x), or
        stops it silently and leaves it to the Manager's sign-off (v3)."""

    @property
    def can_give_back(self) -> bool:
        """May a task be handed back (2.x: POST .../return)?  v3 has no such call."""

    @property
    def drops_task_on_404(self) -> bool:
        """404 on an update: every queued update of that task is dropped (v3)."""

    @property
    def exit_code(self) -> int:
        """The exit code a Manager's restart request asks for (v3); 0 otherwise."""

    @property
    def may_i_run_max(self) -> float:
        """may-i-run is asked at least this often (seconds), whatever
        ``may_i_run_interval`` says (``math.inf``: no such bound)."""

    def establish(self, reregister: bool) -> str | None:
        """Register if needed, and sign on.  The state the Manager asks the
        worker to enter (v3), or None: the worker's usual working state."""

    def sign_on(self) -> str | None:
        """Sign on again (the Manager refused our credentials)."""

    def sign_off(self) -> Answer: ...

    def fetch_task(self) -> Answer: ...

    def parse_task(self, body: typing.Any) -> Task:
        """The task in the neutral form; ``fworker.task.BadTask`` if malformed."""

    def send_update(self, task_id: str, payload: dict[str, typing.Any]) -> Answer:
        """Send one queued (neutral) update, encoded for this Manager."""

    def return_task(self, task_id: str) -> Answer: ...

    def may_i_run(self, task_id: str) -> Answer: ...

    def status_change(self) -> Answer: ...

    def ack_status_change(self, status: str) -> Answer: ...

    def output_produced(self, task_id: str, paths: list[str]) -> Answer:
        """Images task ``task_id`` produced, newest last (2.x: their paths;
        v3: the newest as a preview image, uploaded in the background)."""

    def close(self) -> None:
        """The worker stops: end what the edge runs by itself (preview uploads)."""

    def task_types(self) -> list[str]:
        """The task types this worker announces to this Manager."""
