"""Which Manager generation is at ``manager_url``?

``GET /api/v3/version`` answers a Flamenco 3 Manager with 200 and its
version; a 2.x Manager has no such page (404, or an answer that is not that
JSON).  The ``manager_protocol`` setting forces one and skips the question.
"""
from __future__ import annotations

import logging

from fworker import config
from fworker.edge.base import V2, V3, Edge
from fworker.edge.v2 import V2Edge
from fworker.edge.v3 import V3Edge
from fworker.errors import RetryLater
from fworker.upstream import Upstream

log = logging.getLogger(__name__)


def ask_version(upstream: Upstream) -> tuple[str, str]:
    """(dialect, the Manager's version or "").  RetryLater when the Manager
    cannot be reached or answers 5xx: it is asked again, never guessed."""
    answer = upstream.request("GET", "api/v3/version", auth=False)
    body = answer.body
    if answer.status == 200 and isinstance(body, dict) and isinstance(body.get("version"), str):
        return V3, body["version"]
    return V2, ""


def choose(upstream: Upstream, settings: config.Settings) -> tuple[str, str]:
    """(dialect, Manager version) per ``manager_protocol``."""
    if settings.manager_protocol in (V2, V3):
        return settings.manager_protocol, ""
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


def is_v3(upstream: Upstream) -> bool:
    """For discovery: does this candidate answer as a Flamenco 3 Manager?"""
    try:
        return ask_version(upstream)[0] == V3
    except RetryLater:
        return False
