"""The one way a Worker is built, for the command line, the embedding API
and the demo alike: plug-ins loaded, the tools found, the Manager found, the
overrides of the mode applied to a new Settings value (the caller's stays as
it was)."""
from __future__ import annotations

import functools
import logging

from fworker import config, discovery, plugins, tools
from fworker.commands import base
from fworker.edge import detect, v3
from fworker.edge.base import V2, V3
from fworker.errors import ConfigError
from fworker.upstream import Upstream
from fworker.worker import Worker

log = logging.getLogger(__name__)

# How long a Manager found by SSDP has to answer GET /api/v3/version.
CONFIRM_DEADLINE = 5.0

# --test: the Manager hands a worker in test mode only tasks of this type.
TEST_TASK_TYPES = ("test-blender-render",)


def capabilities(settings: config.Settings, *, test_mode: bool = False) -> tools.Capabilities:
    """The task types this worker can serve: the configured ones (in
    ``test_mode`` only ``TEST_TASK_TYPES``) without those needing a plug-in
    that failed to load or a tool it cannot find (``fworker.tools``).
    ``ConfigError`` if none is left: a worker without a task type would idle
    forever."""
    report = plugins.load()
    wanted = list(TEST_TASK_TYPES if test_mode else report.usable_task_types(settings.task_types))
    wanted += [task_type for task_type in v3_defaults(settings, test_mode) if task_type not in wanted]
    declared = [(decl.task_type, decl.command) for decl in report.declarations]
    found = tools.capabilities(settings, wanted, base.registered(), declared)
    if wanted and not found.announced:
        raise ConfigError("none of the task types can be served: "
                          + "; ".join(f"{t}: {why}" for t, why in found.dropped.items()))
    return found


def v3_defaults(settings: config.Settings, test_mode: bool = False) -> tuple[str, ...]:
    """The task types a Flamenco 3 Manager gets while ``task_types`` is left at its
    (2.x) default and the Manager may be a Flamenco 3 one: its own job types'."""
    if test_mode or settings.manager_protocol == V2:
        return ()
    if tuple(settings.task_types) != tuple(config.DEFAULT_TASK_TYPES.split()):
        return ()
    return v3.DEFAULT_TASK_TYPES


def announced(settings: config.Settings, capable: tools.Capabilities,
              test_mode: bool = False) -> tuple[tuple[str, ...], tuple[str, ...] | None]:
    """(task types for a 2.x Manager, for a Flamenco 3 one or None: the same,
    translated by ``fworker.edge.v3.announced_task_types``).  The v3 defaults the
    tools allow go to a Flamenco 3 Manager only; configured task types to both."""
    extra = v3_defaults(settings, test_mode)
    if not extra:
        return capable.announced, None
    two = tuple(t for t in capable.announced if t in settings.task_types)
    return two or capable.announced, tuple(t for t in extra if t in capable.announced)


def confirm_candidate(settings: config.Settings, url: str,
                      answers: dict[str, tuple[str, str]] | None = None) -> bool:
    """Whether the Manager found at ``url`` will do: asked ``/api/v3/version``
    (unless 2.x is forced), it must be a Flamenco 3 one when v3 is forced.
    What it answered goes to ``answers[url]`` (dialect, version): the worker
    need not ask again."""
    if settings.manager_protocol == V2:
        return True
    upstream = Upstream(url, timeout=min(CONFIRM_DEADLINE, settings.http_timeout),
                        tls_verify=settings.tls_verify, tls_ca_bundle=settings.tls_ca_bundle)
    try:
        answer = detect.answered(upstream)
    finally:
        upstream.session.close()
    if answer is not None and answers is not None:
        answers[url] = answer
    if answer is not None and answer[0] == V3:
        log.info("the Manager at %s answers /api/v3/version: a Flamenco 3 Manager", url)
        return True
    if settings.manager_protocol == V3:
        log.info("skipping the Manager at %s: no Flamenco 3 answer at /api/v3/version (manager_protocol = v3)", url)
        return False
    log.info("the Manager at %s gives no Flamenco 3 answer at /api/v3/version: taken as a 2.x Manager", url)
    return True


def build_worker(settings: config.Settings, *, credentials_path: str | None, reregister: bool = False,
                 single: bool = False, test_mode: bool = False,
                 capable: tools.Capabilities | None = None) -> Worker:
    """A Worker ready to ``run()``, with no signal handler installed.

    It announces the task types ``capabilities()`` leaves (``capable``, when
    the caller found them already, e.g. to show them).  With no
    ``manager_url`` the Manager is looked for on the local network first
    (``Fatal`` when none answers)."""
    capable = capable if capable is not None else capabilities(settings, test_mode=test_mode)
    two, v3_task_types = announced(settings, capable, test_mode)
    changes: dict[str, object] = {"task_types": two}
    answers: dict[str, tuple[str, str]] = {}
    if not settings.manager_url:
        changes["manager_url"] = discovery.discover(settings.discovery_timeout,
                                                    accept=functools.partial(confirm_candidate, settings,
                                                                             answers=answers))
    return Worker(settings.replace(**changes), credentials_path=credentials_path, reregister=reregister,
                  single=single, test_mode=test_mode, v3_task_types=v3_task_types,
                  generation=answers.get(str(changes.get("manager_url", ""))))
