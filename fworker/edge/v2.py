"""The Flamenco Manager 2.x edge: what the worker has always spoken.

A thin layer: the endpoints are ``fworker.upstream``'s, registration is
``fworker.registration``'s, the task JSON is ``fworker.task``'s.  Its
answers are already in the neutral form (``fworker.edge.base``), except that
queued updates may carry ``steps_completed``, which a 2.x Manager does not
know: it is left out (this edge alone decides that; the runner counts steps
whatever the Manager), and an update left with nothing is not sent.
"""
from __future__ import annotations

import math
import typing

from fworker import config
from fworker.edge.base import V2
from fworker.registration import Registrar
from fworker.task import Task, parse_task
from fworker.upstream import Answer, Upstream

# Neutral update fields a 2.x Manager has no place for.
_NOT_FOR_V2 = frozenset({"steps_completed"})


class V2Edge:
    dialect = V2
    shutdown_fails_task = True
    can_give_back = True
    drops_task_on_404 = False
    exit_code = 0
    may_i_run_max = math.inf  # as may_i_run_interval says

    def __init__(self, upstream: Upstream, settings: config.Settings, credentials_path: str | None,
                 manager_version: str = ""):
        self.upstream = upstream
        self.manager_version = manager_version
        self.registrar = Registrar(upstream, settings, credentials_path)

    def establish(self, reregister: bool) -> str | None:
        self.registrar.establish(reregister)
        return None

    def sign_on(self) -> str | None:
        self.registrar.sign_on()
        return None

    def task_types(self) -> list[str]:
        return list(self.registrar.task_types)

    def parse_task(self, body: typing.Any) -> Task:
        return parse_task(body)

    def send_update(self, task_id: str, payload: dict[str, typing.Any]) -> Answer:
        if _NOT_FOR_V2.intersection(payload):
            payload = {key: value for key, value in payload.items() if key not in _NOT_FOR_V2}
            if not payload:
                return Answer(204, None, "")  # only what a 2.x Manager has no place for
        return self.upstream.send_update(task_id, payload)

    def sign_off(self) -> Answer:
        return self.upstream.sign_off()

    def fetch_task(self) -> Answer:
        return self.upstream.fetch_task()

    def return_task(self, task_id: str) -> Answer:
        return self.upstream.return_task(task_id)

    def may_i_run(self, task_id: str) -> Answer:
        return self.upstream.may_i_run(task_id)

    def status_change(self) -> Answer:
        return self.upstream.status_change()

    def ack_status_change(self, status: str) -> Answer:
        return self.upstream.ack_status_change(status)

    def output_produced(self, task_id: str, paths: list[str]) -> Answer:
        return self.upstream.output_produced(paths)

    def close(self) -> None:
        """Nothing runs by itself here."""
