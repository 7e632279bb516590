"""``python -m fworker`` plus a record of the worker's events, for the benchmarks.

    FWORKER_BENCH_EVENTS=events.jsonl python -m bench.workerlaunch -c worker.cfg

Subscribes to the worker's public event bus (``fworker.events``) and writes each
event with its ``time.monotonic()`` at exit.  Nothing of the worker changes;
appending to a list costs well under a microsecond per event.
"""
import fworker  # noqa: F401  (gevent's monkey patching first)

# isort: split

import atexit
import json
import os
import sys
import time

from fworker import cli, worker as worker_module

_events: list = []
_original_init = worker_module.Worker.__init__


def _record(event, **data):
    _events.append((time.monotonic(), event, data.get("task_id"), data.get("index"), data.get("count")))


def _init(self, *args, **kwargs):
    _original_init(self, *args, **kwargs)
    self.events.subscribe("*", _record)


def _dump():
    path = os.environ.get("FWORKER_BENCH_EVENTS")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            for row in _events:
                f.write(json.dumps(row) + "\n")


worker_module.Worker.__init__ = _init
atexit.register(_dump)

if __name__ == "__main__":
    sys.exit(cli.main(sys.argv[1:]))
