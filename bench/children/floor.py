"""The idle-footprint floor: a Python process that imports what the worker
imports at its core (gevent, requests, configobj, dataset), opens an SQLite
table, and then only sleeps.

    python bench/children/floor.py DB_PATH SECONDS
"""
from gevent import monkey

monkey.patch_all()

# After the patch, as in the worker; configobj and requests only for their footprint.
import sys  # noqa: E402

import configobj  # noqa: E402,F401
import dataset  # noqa: E402
import gevent  # noqa: E402
import requests  # noqa: E402,F401


def main(path: str, seconds: float) -> None:
    db = dataset.connect(f"sqlite:///{path}")
    with db:
        db["task_updates"].insert({"task_id": "0" * 24, "payload": "{}"})
    print("ready", flush=True)
    gevent.sleep(seconds)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
