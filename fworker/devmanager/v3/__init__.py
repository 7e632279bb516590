"""A development Flamenco 3 Manager: the api/v3 worker API, validated against
the project's own copy of the official schemas, over real HTTP with state in
SQLite.  The worker's v3 edge is tested against it; ``--demo`` can run on it.

    from fworker.devmanager.v3 import DevManager3, jobs
    manager = DevManager3("/tmp/dev3.sqlite").start()
    manager.submit_job(jobs.job("demo", [jobs.task("hello", [jobs.echo("hi")])]))

See docs/DEVMANAGER.md (Flamenco 3).  Modules: ``schema`` (the API as data),
``validate`` (its JSON Schema subset), ``store``, ``roster`` (workers),
``dispatch`` (tasks), ``jobs`` (job format and command builders), ``protocol``
(worker API handlers), ``app`` (WSGI: routing, auth, validation, request log,
faults), ``devapi`` and ``views`` (developer API and pages), ``manager``.
"""
from . import jobs
from .manager import DevManager3

__all__ = ["DevManager3", "jobs"]
