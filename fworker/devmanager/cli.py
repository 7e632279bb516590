"""``flamenco-dev-manager``: run the development Manager, submit jobs, show status.

    flamenco-dev-manager serve [--db FILE] [--host 127.0.0.1] [--port 8080]
                               [--registration-secret-file FILE] [--variable NAME=VALUE]
                               [--v3 [--worker-timeout SECONDS]]
    flamenco-dev-manager submit JOBFILE [--url URL]
    flamenco-dev-manager status [--url URL]
"""
import fworker  # noqa: F401  (gevent's monkey patching must come before anything else)

# isort: split

import argparse
import json
import logging
import signal
import sys
import typing

import gevent
import gevent.event
import requests

from .common import Row
from .manager import DevManager
from .v3 import DevManager3

DEFAULT_URL = "http://127.0.0.1:8080/"
_HTTP_TIMEOUT = 30.0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command: typing.Callable[[argparse.Namespace], int] = args.command
    return command(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flamenco-dev-manager",
                                     description="A development Flamenco Manager (worker API 2.x, "
                                                 "or Flamenco 3 with serve --v3).")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the Manager until SIGINT or SIGTERM",
                                description="Run the Manager until SIGINT or SIGTERM.")
    serve.add_argument("--db", default="flamenco-dev-manager.sqlite",
                       help="SQLite file holding the state (default: %(default)s)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    serve.add_argument("--port", type=int, default=8080, help="port, 0 for any (default: %(default)s)")
    serve.add_argument("--registration-secret-file", metavar="FILE",
                       help="require a registration JWT signed with the secret in FILE")
    serve.add_argument("--variable", action="append", default=[], metavar="NAME=VALUE",
                       help="replace {NAME} in top-level string settings (repeatable)")
    serve.add_argument("--v3", action="store_true",
                       help="serve the Flamenco 3 worker API (api/v3) instead of 2.x")
    serve.add_argument("--worker-timeout", type=float, default=60.0, metavar="SECONDS",
                       help="with --v3: silence after which a worker is put in error "
                            "(default: %(default)s)")
    serve.set_defaults(command=_serve)

    submit = commands.add_parser("submit", help="submit a job file (JSON)",
                                 description="Submit a job file; prints the job and task ids.")
    submit.add_argument("jobfile", metavar="JOBFILE", help="the job, as JSON (see docs/DEVMANAGER.md)")
    submit.add_argument("--url", default=DEFAULT_URL, help="Manager URL (default: %(default)s)")
    submit.set_defaults(command=_submit)

    status = commands.add_parser("status", help="show workers, jobs and tasks",
                                 description="Show workers, jobs and tasks.")
    status.add_argument("--url", default=DEFAULT_URL, help="Manager URL (default: %(default)s)")
    status.set_defaults(command=_status)
    return parser


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    secret = None
    if args.registration_secret_file:
        try:
            with open(args.registration_secret_file, encoding="utf-8") as f:
                secret = f.read().strip()
        except OSError as ex:
            print(f"Cannot read the registration secret: {ex}", file=sys.stderr)
            return 2
        if not secret:
            print(f"{args.registration_secret_file} is empty", file=sys.stderr)
            return 2
    variables = {}
    for item in args.variable:
        name, equals, value = item.partition("=")
        if not equals or not name:
            print(f"--variable {item!r}: expected NAME=VALUE", file=sys.stderr)
            return 2
        variables[name] = {"all": value}
    if args.v3:
        if secret:
            print("--registration-secret-file: a Flamenco 3 Manager has no registration "
                  "secret", file=sys.stderr)
            return 2
        manager: DevManager | DevManager3 = DevManager3(
            args.db, host=args.host, port=args.port, worker_timeout=args.worker_timeout,
            variables=variables)
    else:
        manager = DevManager(args.db, host=args.host, port=args.port,
                             registration_secret=secret, variables=variables)
    stopping = gevent.event.Event()
    handlers = [gevent.signal_handler(sig, stopping.set) for sig in (signal.SIGINT, signal.SIGTERM)]
    manager.start()
    api = "Flamenco 3 (api/v3)" if args.v3 else "2.x"
    print(f"Development Manager ({api}) serving on {manager.url}", flush=True)
    try:
        stopping.wait()
    finally:
        manager.stop()
        for handler in handlers:
            handler.cancel()
    print("Development Manager stopped", flush=True)
    return 0


def _request(method: str, url: str, **kwargs: typing.Any) -> requests.Response | None:
    try:
        return requests.request(method, url, timeout=_HTTP_TIMEOUT, **kwargs)
    except requests.RequestException as ex:
        print(f"Cannot reach the Manager at {url}: {ex}", file=sys.stderr)
        return None


def _submit(args: argparse.Namespace) -> int:
    try:
        with open(args.jobfile, encoding="utf-8") as f:
            job = json.load(f)
    except (OSError, ValueError) as ex:
        print(f"Cannot read the job file {args.jobfile}: {ex}", file=sys.stderr)
        return 1
    response = _request("POST", _join(args.url, "dev/jobs"), json=job)
    if response is None:
        return 1
    if response.status_code != 201:
        print(f"Job refused ({response.status_code}): {response.text.strip()}", file=sys.stderr)
        return 1
    answer = response.json()
    print(f"job {answer['job_id']}")
    for task_id in answer["task_ids"]:
        print(f"task {task_id}")
    return 0


def _status(args: argparse.Namespace) -> int:
    sections = {}
    for name in ("workers", "jobs", "tasks"):
        response = _request("GET", _join(args.url, f"dev/{name}"))
        if response is None:
            return 1
        if response.status_code != 200:
            print(f"GET dev/{name} answered {response.status_code}", file=sys.stderr)
            return 1
        sections[name] = response.json()
    _print_rows("Workers", sections["workers"], ("id", "nickname", "status", "status_requested"))
    _print_rows("Jobs", sections["jobs"], ("id", "name", "status", "priority"))
    _print_rows("Tasks", sections["tasks"],
                ("id", "name", "status", "task_progress_percentage", "activity"))
    return 0


def _print_rows(title: str, rows: list[Row], keys: tuple[str, ...]) -> None:
    print(f"{title} ({len(rows)})")
    for row in rows:
        print("  " + "  ".join(str(row.get(key, "")) for key in keys))


def _join(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + path


if __name__ == "__main__":
    sys.exit(main())
