"""A development Flamenco Manager: the Manager 2.x worker API, strictness
included, over real HTTP with state in SQLite.  Tests and ``--demo`` run the
real worker against it; developers can submit jobs and watch them.

    from fworker.devmanager import DevManager
    manager = DevManager("/tmp/dev-manager.sqlite").start()
    manager.submit_job({...})   # format: fworker/devmanager/jobs.py

See docs/DEVMANAGER.md.  Modules: ``store`` (SQLite via dataset), ``roster``
(worker rules), ``dispatch`` (task rules), ``protocol`` (worker API),
``devapi`` and ``views`` (developer API and pages), ``app``/``web`` (WSGI and
routing), ``server`` (pywsgi), ``manager`` (DevManager), ``cli``.
"""
from .common import NotFound
from .jobs import InvalidJob
from .manager import DevManager

__all__ = ["DevManager", "InvalidJob", "NotFound"]
