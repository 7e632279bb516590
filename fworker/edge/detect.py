"""Which Manager generation is at ``manager_url``?

``GET /api/v3/version`` answers a Flamenco 3 Manager with 200 and its
version; a 2.x Manager has no such page (404, or an answer that is not that
JSON).  The ``manager_protocol`` setting forces one and skips the question;
a Manager found by discovery was asked already.

The answer is given once: ``EdgeChoice`` holds the worker's edge, which every
part that talks to the Manager reads, from the moment it is chosen on.
"""
from __future__ import annotations

import logging
import math
import typing

from fworker import config
from fworker.edge.base import V2, V3, Edge
from fworker.edge.v2 import V2Edge
from fworker.edge.v3 import V3Edge
from fworker.errors import RetryLater
from fworker.task import Task
from fworker.upstream import Answer, Upstream

log = logging.getLogger(__name__)


def ask_version(upstream: Upstream) -> tuple[str, str]:
    """(dialect, the Manager's version or "").  RetryLater when the Manager
    cannot be reached or answers 5xx: it is asked again, never guessed."""
    answer = upstream.request("GET", "api/v3/version", auth=False)
    body = answer.body
    if answer.status == 200 and isinstance(body, dict) and isinstance(body.get("version"), str):
        return V3, body["version"]
    return V2, ""


def forced(settings: config.Settings) -> tuple[str, str] | None:
    """(dialect, "") when ``manager_protocol`` forces one; None: the Manager is asked."""
    if settings.manager_protocol in (V2, V3):
        return settings.manager_protocol, ""
    return None


def choose(upstream: Upstream, settings: config.Settings) -> tuple[str, str]:
    """(dialect, Manager version) per ``manager_protocol``."""
    known = forced(settings)
    if known is not None:
        return known
    dialect, version = ask_version(upstream)
    if dialect == V3:
        log.info("the Manager at %s is Flamenco %s: speaking api/v3", upstream.manager_url, version)
    else:
        log.info("the Manager at %s has no /api/v3/version: speaking Flamenco Manager 2.x", upstream.manager_url)
    return dialect, version


def make_edge(dialect: str, upstream: Upstream, settings: config.Settings, credentials_path: str | None,
              manager_version: str = "", *, v3_task_types: tuple[str, ...] | None = None) -> Edge:
    """``v3_task_types``: what a Flamenco 3 Manager is told this worker runs
    (the tools allowing); None: ``fworker.edge.v3.announced_task_types``."""
    if dialect == V3:
        return V3Edge(upstream, settings, credentials_path, manager_version, task_types=v3_task_types)
    return V2Edge(upstream, settings, credentials_path, manager_version)


def answered(upstream: Upstream) -> tuple[str, str] | None:
    """For discovery: (dialect, version) as a candidate answers, or None when
    it could not be asked (unreachable, 5xx): start-up asks it again then."""
    try:
        return ask_version(upstream)
    except RetryLater:
        return None


class NotChosen:
    """The edge while the Manager's generation is not known: it asks the
    Manager nothing (RetryLater) and holds no credentials."""

    dialect = ""
    manager_version = ""
    shutdown_fails_task = True  # no task runs before the choice: as for 2.x
    can_give_back = False
    drops_task_on_404 = False
    exit_code = 0
    may_i_run_max = math.inf

    def __init__(self, upstream: Upstream):
        self.upstream = upstream

    def _unknown(self) -> typing.NoReturn:
        raise RetryLater("the Manager's generation is not known yet")

    def establish(self, reregister: bool) -> str | None:
        self._unknown()

    def sign_on(self) -> str | None:
        self._unknown()

    def sign_off(self) -> Answer:
        self._unknown()

    def fetch_task(self) -> Answer:
        self._unknown()

    def parse_task(self, body: typing.Any) -> Task:
        self._unknown()

    def send_update(self, task_id: str, payload: dict[str, typing.Any]) -> Answer:
        self._unknown()

    def return_task(self, task_id: str) -> Answer:
        self._unknown()

    def may_i_run(self, task_id: str) -> Answer:
        self._unknown()

    def status_change(self) -> Answer:
        self._unknown()

    def ack_status_change(self, status: str) -> Answer:
        self._unknown()

    def output_produced(self, task_id: str, paths: list[str]) -> Answer:
        self._unknown()

    def close(self) -> None:
        """Nothing was started."""

    def task_types(self) -> list[str]:
        return []


class EdgeChoice:
    """The worker's edge, chosen once (``choose``): ``NotChosen`` until then.
    The parts that talk to the Manager (the flusher, the status changes, the
    output throttle, the may-i-run poller, the loop) all hold this one object
    and speak through it, so that none can speak another generation than the
    rest, or with another edge's credentials."""

    def __init__(self, upstream: Upstream):
        self._edge: Edge = NotChosen(upstream)
        self.chosen = False

    def choose(self, edge: Edge) -> None:
        if self.chosen:
            raise RuntimeError(f"the edge is chosen once: {self._edge.dialect} already, not {edge.dialect} too")
        self._edge, self.chosen = edge, True

    @property
    def edge(self) -> Edge:
        return self._edge

    @property
    def dialect(self) -> str:
        return self._edge.dialect

    @property
    def manager_version(self) -> str:
        return self._edge.manager_version

    @property
    def upstream(self) -> Upstream:
        return self._edge.upstream

    @property
    def shutdown_fails_task(self) -> bool:
        return self._edge.shutdown_fails_task

    @property
    def can_give_back(self) -> bool:
        return self._edge.can_give_back

    @property
    def drops_task_on_404(self) -> bool:
        return self._edge.drops_task_on_404

    @property
    def exit_code(self) -> int:
        return self._edge.exit_code

    @property
    def may_i_run_max(self) -> float:
        return self._edge.may_i_run_max

    def establish(self, reregister: bool) -> str | None:
        return self._edge.establish(reregister)

    def sign_on(self) -> str | None:
        return self._edge.sign_on()

    def sign_off(self) -> Answer:
        return self._edge.sign_off()

    def fetch_task(self) -> Answer:
        return self._edge.fetch_task()

    def parse_task(self, body: typing.Any) -> Task:
        return self._edge.parse_task(body)

    def send_update(self, task_id: str, payload: dict[str, typing.Any]) -> Answer:
        return self._edge.send_update(task_id, payload)

    def return_task(self, task_id: str) -> Answer:
        return self._edge.return_task(task_id)

    def may_i_run(self, task_id: str) -> Answer:
        return self._edge.may_i_run(task_id)

    def status_change(self) -> Answer:
        return self._edge.status_change()

    def ack_status_change(self, status: str) -> Answer:
        return self._edge.ack_status_change(status)

    def output_produced(self, task_id: str, paths: list[str]) -> Answer:
        return self._edge.output_produced(task_id, paths)

    def close(self) -> None:
        self._edge.close()

    def task_types(self) -> list[str]:
        return self._edge.task_types()
