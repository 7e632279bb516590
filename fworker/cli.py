"""``flamenco-worker``: argument parsing, nothing else; the Worker is built
by fworker.wiring.  The exit codes are listed in ``EXIT_CODES``."""
from __future__ import annotations

import fworker  # first: its __init__ monkey-patches before anything else is imported

# isort: split

import argparse
import logging
import sys

from fworker import childenv, config, configsafety, instance, logsetup, settingsdoc, settingvalues
from fworker.errors import AlreadyRunning, ConfigError, Fatal, RetryLater
from fworker.statefiles import StateFiles

log = logging.getLogger("fworker")

# A constant, not parsed from the docstring: python -OO strips docstrings.
EXIT_CODES = """\
  0  clean shutdown (or, with --single, the task completed)
  1  fatal error while running
  2  bad configuration or command line
  3  the Manager refused registration (bad worker_registration_secret)
  4  two commands claim the same name
  5  --single: the task did not complete (failed, or given back)
  6  another process of this worker runs (it holds the lock file beside the update queue)
  130 a second SIGINT/SIGTERM: exited at once, the queue kept on disk
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flamenco-worker",
        description="Flamenco render-farm Worker: asks a Flamenco Manager for tasks and runs them.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=settingsdoc.help_epilog() + "\n\nexit codes:\n" + EXIT_CODES,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {fworker.__version__}")
    parser.add_argument("-c", "--config", metavar="FILE", help="read FILE after the default configuration files")
    parser.add_argument("--instance", metavar="NAME",
                        help=f"run the worker instance NAME (default: ${instance.ENV_VAR}, else the default "
                        "instance): its own [flamenco-worker@NAME] settings, credentials, queue and logs")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more (INFO and up from every module)")
    parser.add_argument("-d", "--debug", action="store_true", help="log everything (DEBUG)")
    parser.add_argument("-r", "--reregister", action="store_true",
                        help="register as a new worker even if credentials exist")
    parser.add_argument("-1", "--single", action="store_true",
                        help="exit after one task (exit code 0 only if it completed)")
    parser.add_argument("-t", "--test", action="store_true",
                        help="test mode: only task type test-blender-render, status 'testing'")
    parser.add_argument("--check-config", action="store_true",
                        help="validate the configuration, print the effective settings (secrets masked) and exit")
    parser.add_argument("--demo", nargs="?", const="v2", choices=("v2", "v3", "both"), metavar="v2|v3|both",
                        help="run a built-in development Manager (Flamenco 2.x, the default; v3: Flamenco 3; "
                             "both: one after the other) with a demo job on 127.0.0.1 and work on it")
    parser.add_argument("--list-commands", action="store_true",
                        help="list every command (built-in or from a plug-in package) with its origin, and exit")
    return parser


def setup_logging(verbose: bool, debug: bool) -> None:
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-8s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if not (verbose or debug):
        # Life-cycle messages are worth seeing by default; library chatter is not.
        logging.getLogger("fworker").setLevel(logging.INFO)
    # Schema set-up chatter from dataset's migration library, even with -v.
    logging.getLogger("alembic").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.debug)
    try:
        if args.list_commands:
            from fworker import plugins

            return plugins.list_commands()
        if args.demo:
            from fworker import demo

            return demo.run(args)
        loaded = config.load(args.config, instance=instance.chosen(args.instance))
        settings, state = instance.settle(loaded)
        if args.check_config:
            return print_config(settings, state)
        logsetup.configure(settings, args.verbose, args.debug)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        for warning in configsafety.warnings(settings):
            log.warning("%s", warning)
        return run_worker(settings, args, state)
    except ConfigError as ex:
        print(f"flamenco-worker: configuration error: {ex}", file=sys.stderr)
        return ex.exit_code
    except Fatal as ex:
        log.critical("%s", ex)
        return ex.exit_code


def run_worker(settings: config.Settings, args: argparse.Namespace, state: StateFiles) -> int:
    from fworker.wiring import announced, build_worker, capabilities

    capable = capabilities(settings, test_mode=args.test)
    try:
        worker = build_worker(settings, credentials_path=state.credentials_v2, reregister=args.reregister,
                              single=args.single, test_mode=args.test, capable=capable)
    except AlreadyRunning as ex:
        refused = instance.refusal(ex, settings.instance)
        if settings.log_file:  # the running process's log: the one starting this one looks here
            print(f"flamenco-worker: {refused}", file=sys.stderr)
        raise refused from None
    worker.install_signal_handlers()
    _, three = announced(settings, capable, args.test)
    rows = ([("task types (v3)", " ".join(three))] if three is not None else []) + capable.rows()
    forced = settings.manager_protocol != "auto"
    log.info("%s", logsetup.banner(worker.settings, fworker.__version__, worker.settings.worker_id or None,
                                   worker.queue.path, rows,
                                   protocol=f"{settings.manager_protocol} (forced by manager_protocol)" if forced
                                   else "auto: the Manager is asked at start (GET /api/v3/version)"))

    def manager_known() -> None:
        # The banner's last line, once the Manager said which generation it is.
        edge = worker.edge
        log.info("protocol: %s%s%s; announcing task types: %s", edge.dialect,
                 f" (Flamenco Manager {edge.manager_version})" if edge.manager_version else "",
                 " (forced by manager_protocol)" if forced else "", " ".join(edge.task_types()))

    worker.on_manager_known = manager_known
    return worker.run()


# --check-config asks the Manager which generation it is, briefly: it checks, it does not wait.
CHECK_DEADLINE = 5.0


def protocol_check(settings: config.Settings) -> str:
    """The dialect the worker would speak, for ``--check-config``: as forced, or as
    the Manager answers ``GET /api/v3/version`` within ``CHECK_DEADLINE``."""
    from fworker.edge import detect
    from fworker.upstream import Upstream

    if settings.manager_protocol != "auto":
        return f"{settings.manager_protocol} (forced by manager_protocol)"
    if not settings.manager_url:
        return "auto (no manager_url: the Manager found on the network is asked at start)"
    upstream = Upstream(settings.manager_url, timeout=CHECK_DEADLINE, tls_verify=settings.tls_verify,
                        tls_ca_bundle=settings.tls_ca_bundle)
    asked = f"asked {upstream.manager_url.rstrip('/')}/api/v3/version"
    try:
        dialect, version = detect.ask_version(upstream)
    except RetryLater as ex:
        return f"auto ({asked}: {ex}; the worker asks again at start)"
    finally:
        upstream.session.close()
    if dialect == "v3":
        return f"v3 (auto: {asked}: Flamenco {version})"
    return f"v2 (auto: {asked}: no Flamenco 3 answer, so Flamenco Manager 2.x)"


def print_config(settings: config.Settings, state: StateFiles) -> int:
    print(f"instance: {instance.describe(settings)}")
    print("files read: " + (", ".join(settings.files) or "none"))
    for warning in configsafety.warnings(settings):
        print(f"warning: {warning}")
    for name, value in settings.masked().items():
        print(f"{name} = {settingvalues.format_value(value)}    # from {settings.sources[name]}")
    for what, path in state.named().items():
        print(f"{what}: {path or '(not used)'}")
    print(f"child environment: {childenv.describe(settings.child_environment)}")
    print(f"blender render arguments: {settings.blender_args.describe()}")
    from fworker.wiring import announced, capabilities  # late: loads plug-ins and asks the tools their versions

    capable = capabilities(settings)
    two, three = announced(settings, capable)
    print("task types announced: " + " ".join(two))
    if three is not None:
        print("task types announced to a Flamenco 3 Manager: " + " ".join(three))
    print("manager protocol: " + protocol_check(settings))
    for name, text in capable.rows():
        print(f"{name}: {text}")
    return 0
