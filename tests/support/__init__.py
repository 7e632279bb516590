"""Helpers every test imports from; no test module imports another.

- ``waiting``: the one way tests wait (a condition against a deadline);
- ``jobs``: the one builder of jobs, tasks and commands for the development Manager;
- ``client``: ``WorkerClient``, the worker API spoken by hand, and a Manager's request log;
- ``client3``: ``V3Client``, the Flamenco 3 worker API spoken by hand;
- ``workers``: the real worker, as a child process (``WorkerProcess``) or in this process
  (``build_worker``);
- ``reporter``: ``RecordingReporter``, what a command reports, in order;
- ``media``: tiny Blender and FFmpeg media;
- ``faults``: the fault-injecting proxy in front of the development Manager;
- ``journal``: the queue that also journals every committed update; ``journaled_worker.py``
  runs the real worker with it;
- ``relharness``, ``relcheck``: the seeded fault runs of the reliability suite and the
  delivery check.

Shared fixtures are in ``tests/conftest.py``.
"""
