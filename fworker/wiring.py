"""The one way a Worker is built, for the command line, the embedding API
and the demo alike: plug-ins loaded, the Manager found, the overrides of the
mode applied to a new Settings value (the caller's stays as it was)."""
from __future__ import annotations

from fworker import config, discovery, plugins
from fworker.worker import Worker

# --test: the Manager hands a worker in test mode only tasks of this type.
TEST_TASK_TYPES = ("test-blender-render",)


def build_worker(settings: config.Settings, *, credentials_path: str | None, reregister: bool = False,
                 single: bool = False, test_mode: bool = False) -> Worker:
    """A Worker ready to ``run()``, with no signal handler installed.

    Task types that need a plug-in which failed to load are not advertised
    (``ConfigError`` if none is left); in ``test_mode`` the worker announces
    only ``TEST_TASK_TYPES``.  With no ``manager_url`` the Manager is looked
    for on the local network first (``Fatal`` when none answers)."""
    changes: dict[str, object] = {"task_types": plugins.load().usable_task_types(settings.task_types)}
    if test_mode:
        changes["task_types"] = TEST_TASK_TYPES
    if not settings.manager_url:
        changes["manager_url"] = discovery.discover(settings.discovery_timeout)
    return Worker(settings.replace(**changes), credentials_path=credentials_path, reregister=reregister,
                  single=single, test_mode=test_mode)
