"""fworker's benchmark suite: ``python -m bench --quick`` or ``python -m bench --full``.

Not part of the test suite.  Every benchmark starts its own development Manager
(a separate process, ``bench.tracemanager``) and real worker processes on
127.0.0.1, measures a baseline in the same run, writes ``bench/results/NAME.json``
and regenerates the tables of ``docs/PERFORMANCE.md`` (``python -m bench.report``).
"""
