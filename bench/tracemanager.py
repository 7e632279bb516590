"""The development Manager as a separate process, with a trace of what it did.

    python -m bench.tracemanager --db FILE --port N --trace FILE.jsonl [--v3]

This is ``flamenco-dev-manager serve`` plus instrumentation that lives here,
in the benchmark, and wraps (never changes) the Manager's objects: the time of
every request and how long it took, every task given to a worker, every task
update accepted.  Times are ``time.monotonic()`` (CLOCK_MONOTONIC, shared by
every process on the machine), so they compare with the worker's and the
benchmark's own clocks.  The trace is written as JSON lines, flushed every
half second and at exit (SIGTERM/SIGINT).  ``--v3``: the Flamenco 3
development Manager (``flamenco-dev-manager serve --v3``), traced alike: an
update's status is its ``taskStatus``, its outcome the first of the two values
the v3 dispatcher returns.
"""
import fworker  # noqa: F401  (gevent's monkey patching first)

# isort: split

import argparse
import base64
import json
import signal
import sys
import time

import gevent
import gevent.event

from fworker.devmanager import DevManager
from fworker.devmanager.v3 import DevManager3


class Trace:
    def __init__(self, path: str):
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115  (kept open by the object; its close() closes it)
        self._rows: list = []

    def add(self, *row) -> None:
        self._rows.append(row)

    def flush(self) -> None:
        rows, self._rows = self._rows, []
        for row in rows:
            self._file.write(json.dumps(row) + "\n")
        self._file.flush()

    def flush_loop(self) -> None:
        while True:
            gevent.sleep(0.5)
            self.flush()


def _worker_of(environ: dict) -> str:
    header = environ.get("HTTP_AUTHORIZATION", "")
    if not header.startswith("Basic "):
        return ""
    try:
        return base64.b64decode(header[6:]).decode().partition(":")[0]
    except Exception:  # noqa: BLE001  (only a label)
        return "?"


def _kind(path: str) -> str:
    """/tasks/<id>/update -> /tasks/*/update: a path without its ids (2.x ids,
    Flamenco 3 UUIDs)."""
    return "/".join("*" if len(part) in (24, 36) else part for part in path.split("/"))


def instrument(manager: DevManager | DevManager3, trace: Trace) -> None:
    app = manager.app

    def traced_app(environ, start_response):
        t0 = time.monotonic()
        status = []

        def start(line, headers, *rest):
            status.append(int(line[:3]))
            return start_response(line, headers, *rest)

        body = app(environ, start)
        trace.add("req", t0, time.monotonic() - t0, environ["REQUEST_METHOD"], _kind(environ.get("PATH_INFO", "")),
                  status[0] if status else 0, _worker_of(environ))
        return body

    manager.app = traced_app

    dispatcher = manager.dispatcher
    give, apply_update, submit = dispatcher._give, dispatcher.apply_update, dispatcher.submit_job

    def traced_give(task, worker):
        result = give(task, worker)
        trace.add("give", time.monotonic(), task["id"], worker["id"])
        return result

    def traced_apply(worker, task_id, body, *fields):
        # 2.x: (worker, task_id, body, fields) -> outcome; v3: (worker, task_id, body) -> (outcome, message)
        result = apply_update(worker, task_id, body, *fields)
        outcome = result[0] if isinstance(result, tuple) else result
        text = body.get("log")
        lines = text.count("\n") + 1 if isinstance(text, str) and text else 0
        first = text[:80] if lines else ""
        trace.add("update", time.monotonic(), task_id, outcome, body.get("task_status", body.get("taskStatus")),
                  body.get("current_command_idx"), (body.get("activity") or "")[:60], lines, first,
                  len(text) if isinstance(text, str) else 0, body.get("command_progress_percentage"),
                  body.get("task_progress_percentage"))
        return result

    def traced_submit(job):
        result = submit(job)
        trace.add("submit", time.monotonic(), result["job_id"], len(result["task_ids"]))
        return result

    dispatcher._give, dispatcher.apply_update, dispatcher.submit_job = traced_give, traced_apply, traced_submit


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tracemanager")
    parser.add_argument("--db", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--trace", required=True)
    parser.add_argument("--worker-timeout", type=float, default=60.0)
    parser.add_argument("--v3", action="store_true", help="the Flamenco 3 development Manager")
    args = parser.parse_args(argv)
    trace = Trace(args.trace)
    kind = DevManager3 if args.v3 else DevManager
    manager = kind(args.db, host="127.0.0.1", port=args.port, worker_timeout=args.worker_timeout)
    instrument(manager, trace)
    stopping = gevent.event.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(sig, stopping.set)
    manager.start()
    trace.add("up", time.monotonic())
    flusher = gevent.spawn(trace.flush_loop)
    print(f"serving on {manager.url}", flush=True)
    try:
        stopping.wait()
    finally:
        manager.stop()
        flusher.kill()
        trace.add("down", time.monotonic())
        trace.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
