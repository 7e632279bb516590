"""The edge: everything that differs between Manager generations.

The worker's core (queue, flusher loop, runner, process handling, watchdogs,
signals, metrics, plug-ins) talks to the Manager only through an ``Edge``
(``base.py``): ``v2.py`` speaks Flamenco Manager 2.x, ``v3.py`` Flamenco 3's
worker API (api/v3); ``detect.py`` chooses between them at start-up.
"""
