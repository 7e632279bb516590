"""The one way a Worker is built, for the command line, the embedding API
and the demo alike: plug-ins loaded, the tools found, the Manager found, the
overrides of the mode applied to a new Settings value (the caller's stays as
it was)."""
from __future__ import annotations

from fworker import config, discovery, plugins, tools
from fworker.commands import base
from fworker.errors import ConfigError
from fworker.worker import Worker

# --test: the Manager hands a worker in test mode only tasks of this type.
TEST_TASK_TYPES = ("test-blender-render",)


def capabilities(settings: config.Settings, *, test_mode: bool = False) -> tools.Capabilities:
    """The task types this worker can serve: the configured ones (in
    ``test_mode`` only ``TEST_TASK_TYPES``) without those needing a plug-in
    that failed to load or a tool it cannot find (``fworker.tools``).
    ``ConfigError`` if none is left: a worker without a task type would idle
    forever."""
    report = plugins.load()
    wanted = TEST_TASK_TYPES if test_mode else report.usable_task_types(settings.task_types)
    declared = [(decl.task_type, decl.command) for decl in report.declarations]
    found = tools.capabilities(settings, wanted, base.registered(), declared)
    if wanted and not found.announced:
        raise ConfigError("none of the task types can be served: "
                          + "; ".join(f"{t}: {why}" for t, why in found.dropped.items()))
    return found


def build_worker(settings: config.Settings, *, credentials_path: str | None, reregister: bool = False,
                 single: bool = False, test_mode: bool = False,
                 capable: tools.Capabilities | None = None) -> Worker:
    """A Worker ready to ``run()``, with no signal handler installed.

    It announces the task types ``capabilities()`` leaves (``capable``, when
    the caller found them already, e.g. to show them).  With no
    ``manager_url`` the Manager is looked for on the local network first
    (``Fatal`` when none answers)."""
    capable = capable if capable is not None else capabilities(settings, test_mode=test_mode)
    changes: dict[str, object] = {"task_types": capable.announced}
    if not settings.manager_url:
        changes["manager_url"] = discovery.discover(settings.discovery_timeout)
    return Worker(settings.replace(**changes), credentials_path=credentials_path, reregister=reregister,
                  single=single, test_mode=test_mode)
