"""Run the benchmarks: ``python -m bench [--quick | --full] [--only NAME,...]``.

Each benchmark writes ``bench/results/NAME.json``; at the end the generated
part of ``docs/PERFORMANCE.md`` is rewritten from every result file
(``python -m bench.report`` does only that).  ``--save-as before`` also keeps a
copy in ``bench/results/before/`` for the before/after columns of the doc.
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import shutil
import sys
import time
import traceback

from bench import common

BENCHMARKS = ["render", "tasks", "logs", "outage", "idle", "farm", "warm"]
RESULTS = os.path.join(common.ROOT, "bench", "results")


class Context:
    def __init__(self, args: argparse.Namespace):
        self.quick = args.quick
        self.args = args
        self.profile = args.profile
        self.profile_dir = os.path.join(RESULTS, "profiles")

    def runs(self, quick: int, full: int) -> int:
        return self.args.runs or (quick if self.quick else full)

    def profile_path(self, name: str) -> str:
        os.makedirs(self.profile_dir, exist_ok=True)
        return os.path.join(self.profile_dir, f"{name}.txt")

    def log(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="fewer runs and smaller sizes (a few minutes)")
    mode.add_argument("--full", action="store_true", help="the sizes of the issue, several runs (default)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--runs", type=int, default=0, help="override the number of runs of each benchmark")
    parser.add_argument("--profile", action="store_true",
                        help="run the worker of the first run under py-spy; profiles in bench/results/profiles/")
    parser.add_argument("--save-as", default="", help="also copy the results to bench/results/LABEL/")
    parser.add_argument("--commit", default="",
                        help="measure the fworker package of this commit (a clean snapshot) instead of the work tree")
    parser.add_argument("--out", default="", help="write the results to this folder instead of bench/results/ "
                        "(implies --no-report)")
    parser.add_argument("--no-report", action="store_true", help="do not rewrite docs/PERFORMANCE.md")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or BENCHMARKS
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    results = os.path.abspath(args.out) if args.out else RESULTS
    if args.out:
        args.no_report = True
    ctx = Context(args)
    ctx.profile_dir = os.path.join(results, "profiles")
    if args.commit:
        ctx.log(f"measuring fworker of commit {common.use_commit(args.commit)}")
    os.makedirs(results, exist_ok=True)
    failures = 0
    for name in names:
        module = importlib.import_module(f"bench.b_{name}")
        ctx.log(f"=== {name}: {module.TITLE} ({'quick' if args.quick else 'full'})")
        started = time.monotonic()
        load = common.LoadMeter()
        try:
            result = module.run(ctx)
        except Exception:  # noqa: BLE001  (one broken benchmark must not hide the others)
            failures += 1
            ctx.log(f"{name} FAILED:\n{traceback.format_exc()}")
            continue
        result.update({
            "name": name, "title": module.TITLE, "mode": "quick" if args.quick else "full",
            "measured_at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "duration_s": round(time.monotonic() - started, 1), "machine": common.machine(),
            "other_load": load.stop(),
        })
        ctx.log(f"  other processes on the machine used {result['other_load']['other_cpu_percent']:.0f} % "
                f"of its CPU meanwhile")
        path = os.path.join(results, f"{name}.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1, sort_keys=True, default=float)
        if args.save_as:
            os.makedirs(os.path.join(results, args.save_as), exist_ok=True)
            shutil.copy(path, os.path.join(results, args.save_as, f"{name}.json"))
        for metric in result["metrics"]:
            met = {True: "met", False: "MISSED", None: "-"}[metric.get("met")]
            ctx.log(f"  {metric['metric']}: {_fmt(metric['value'])} {metric.get('unit', '')}"
                    f"  (target {metric.get('target', '-')}: {met})")
    if not args.no_report:
        from bench import report
        report.write()
        ctx.log(f"wrote {report.DOC}")
    return 1 if failures else 0


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
