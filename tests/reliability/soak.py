"""The reliability soak: many seeded fault runs with the hostile cases mixed in.

    python -m tests.reliability.soak --runs 1000 --parallel 2 --jsonl soak.jsonl
    python -m tests.reliability.soak --from soak.jsonl --write docs/RELIABILITY.md

Each run (``tests.support.soakrun.SoakRun``) is the real worker process against a
development Manager behind the fault-injecting proxy: two counting tasks plus two
hostile tasks drawn from the seed, under a seeded schedule of network faults, SIGKILLs,
hostile answers and a second worker started on the same queue.  Seeds alternate between
the Flamenco 2.x and the Flamenco 3 Manager (``--protocol both``).  ``--long-tasks N``
adds one run per Manager with N tasks and no SIGKILL: the worker's memory over a long
life.  Every run's result is one JSON line (``--jsonl``, appended), so a soak can be
made in pieces and reported once (``--from``).  Not part of the test suite (hours);
exits 1 if any run failed a check.
"""
from __future__ import annotations

import fworker  # noqa: F401  (monkey-patches before the rest)

# isort: split

import argparse
import collections
import dataclasses
import json
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from tests.reliability.report import replace_between
from tests.support import relharness
from tests.support.soakrun import FAULT_WEIGHTS, SoakRun

BEGIN, END = "<!-- soak:begin -->", "<!-- soak:end -->"
_SHARDS_FAILED: list[int] = []  # exit codes of shards that did not finish
FAULTS, TASKS, LINES, DEADLINE = 12, 2, 120, 120.0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.from_file:
        results = [json.loads(line) for path in args.from_file
                   for line in pathlib.Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    elif args.parallel > 1:
        results = _in_parallel(args)
    else:
        results = _runs(args)
    if not results:
        print("no runs to report", file=sys.stderr)
        return 1
    text = figures(results)
    print(text)
    if args.write:
        replace_between(args.write, text, BEGIN, END)
    return 0 if all(r["ok"] for r in results) and not _SHARDS_FAILED else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100, help="seeded runs (default: %(default)s)")
    parser.add_argument("--first-seed", type=int, default=1, help="seeds are N, N+1, ... (default: %(default)s)")
    parser.add_argument("--protocol", choices=(*relharness.PROTOCOLS, "both"), default="both",
                        help="the Manager; both: odd seeds 2.x, even seeds Flamenco 3 (default: %(default)s)")
    parser.add_argument("--parallel", type=int, default=1, help="runs at a time, in child processes (default: 1)")
    parser.add_argument("--long-tasks", type=int, default=0, help="add a run of N tasks per Manager (default: none)")
    parser.add_argument("--jsonl", help="append every run's result to this file, one JSON line each")
    parser.add_argument("--from", dest="from_file", nargs="+", metavar="JSONL",
                        help="report these results; run nothing")
    parser.add_argument("--keep-failed", metavar="DIR", help="copy the folder of a run that failed a check here "
                        "(the worker's logs, the Manager's database)")
    parser.add_argument("--write", metavar="FILE", help="replace the soak figures in FILE (docs/RELIABILITY.md)")
    parser.add_argument("--shard", default="0/1", help=argparse.SUPPRESS)  # i/K: the seeds of child i of K
    return parser


def _protocol(args: argparse.Namespace, seed: int) -> str:
    if args.protocol != "both":
        return args.protocol
    return "v2" if seed % 2 else "v3"


def _runs(args: argparse.Namespace) -> list[dict]:
    index, count = (int(part) for part in args.shard.split("/"))
    seeds = [s for s in range(args.first_seed, args.first_seed + args.runs) if (s - args.first_seed) % count == index]
    results = []
    with tempfile.TemporaryDirectory(prefix="fworker-soak-") as tmp:
        for seed in seeds:
            results.append(_run(seed, pathlib.Path(tmp) / str(seed), _protocol(args, seed), args.jsonl))
            _keep_if_failed(results[-1], pathlib.Path(tmp) / str(seed), args.keep_failed)
        if index == 0 and args.long_tasks:
            protocols = relharness.PROTOCOLS if args.protocol == "both" else (args.protocol,)
            for protocol in protocols:
                results.append(_run(0, pathlib.Path(tmp) / f"long-{protocol}", protocol, args.jsonl,
                                    tasks=args.long_tasks, faults=max(FAULTS, args.long_tasks // 2), kills=0,
                                    deadline=DEADLINE + 5 * args.long_tasks))
                _keep_if_failed(results[-1], pathlib.Path(tmp) / f"long-{protocol}", args.keep_failed)
    return results


def _keep_if_failed(record: dict, root: pathlib.Path, keep: str | None) -> None:
    if keep and not record["ok"]:
        shutil.copytree(root, pathlib.Path(keep) / root.name, dirs_exist_ok=True)


def _run(seed: int, root: pathlib.Path, protocol: str, jsonl: str | None, *, tasks: int = TASKS,
         faults: int = FAULTS, kills: int = 1, deadline: float = DEADLINE) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    steps = relharness.schedule(seed, faults, kills=kills, weights=FAULT_WEIGHTS)
    run = SoakRun(seed, root, steps, tasks, LINES, protocol, hostile=None if tasks == TASKS else [])
    try:
        result = run.execute(deadline)
    finally:
        run.close()
    record = _record(run, result, long=tasks != TASKS)
    record["tasks"] = tasks
    if not record["ok"]:  # what the proxy saw, for whoever looks into it (--keep-failed)
        with open(root / "exchanges.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps({**dataclasses.asdict(x), "body": repr(x.body)[:500]}) + "\n"
                         for x in run.proxy.exchanges)
    line = json.dumps(record)
    if jsonl:
        with open(jsonl, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    d = result.delivery
    print(f"{protocol} seed {seed}: {'ok' if record['ok'] else 'FAILED'} in {result.seconds}s, "
          f"hostile {run.hostile}, faults {dict(result.faults)}, updates {d.produced}/{d.delivered}/"
          f"{d.duplicates}/{d.lost} (produced/delivered/twice/lost), orphans {result.orphans}, "
          f"hub {run.hub_blocked_own_max:.3f}s own, {run.hub_blocked_max:.3f}s in all", file=sys.stderr, flush=True)
    for problem in record["problems"]:
        print(f"  {problem[:2000]}", file=sys.stderr, flush=True)
    return record


def _record(run: SoakRun, result: relharness.RunResult, long: bool) -> dict:
    d = result.delivery
    return {"seed": result.seed, "protocol": result.protocol, "long": long, "ok": result.ok,
            "seconds": result.seconds, "faults": dict(result.faults), "hostile": run.hostile,
            "produced": d.produced, "delivered": d.delivered, "duplicates": d.duplicates, "lost": d.lost,
            "unsendable": d.unsendable, "orphans": result.orphans, "longest_outage": result.longest_outage,
            "worker_exit": result.worker_exit, "hub_blocked_max": run.hub_blocked_max,
            "hub_blocked_own_max": run.hub_blocked_own_max, "rss": run.rss,
            "double_starts": run.double_starts, "problems": result.problems + d.problems}


def _in_parallel(args: argparse.Namespace) -> list[dict]:
    """Shards in child processes, each appending to a file of its own (beside
    ``--jsonl``, so that a long soak's progress can be watched); then all of them."""
    with tempfile.TemporaryDirectory(prefix="fworker-soak-shards-") as tmp:
        base = args.jsonl or str(pathlib.Path(tmp) / "soak.jsonl")
        children, files = [], []
        for index in range(args.parallel):
            out = pathlib.Path(f"{base}.shard-{index}")
            out.unlink(missing_ok=True)
            files.append(out)
            command = [sys.executable, "-m", "tests.reliability.soak", "--runs", str(args.runs),
                       "--first-seed", str(args.first_seed), "--protocol", args.protocol,
                       "--long-tasks", str(args.long_tasks), "--jsonl", str(out),
                       *(["--keep-failed", args.keep_failed] if args.keep_failed else []),
                       "--shard", f"{index}/{args.parallel}"]
            children.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
        for index, child in enumerate(children):
            if child.wait() != 0 and not _shard_ran_all(files[index], args, index):
                print(f"shard {index} exited {child.returncode} before its last run", file=sys.stderr)
                _SHARDS_FAILED.append(child.returncode)
        results = [json.loads(line) for out in files if out.exists() for line in out.read_text().splitlines()]
        if args.jsonl:
            with open(args.jsonl, "a", encoding="utf-8") as f:
                f.writelines(json.dumps(r) + "\n" for r in results)
            for out in files:
                out.unlink(missing_ok=True)
    return results


def _long_runs(args: argparse.Namespace) -> int:
    return 0 if not args.long_tasks else 2 if args.protocol == "both" else 1


def _shard_ran_all(out: pathlib.Path, args: argparse.Namespace, index: int) -> bool:
    """A shard exits 1 when a run failed a check: that is reported with the run."""
    expected = len(range(index, args.runs, args.parallel)) + (_long_runs(args) if index == 0 else 0)
    return out.exists() and len(out.read_text().splitlines()) >= expected


def figures(results: list[dict]) -> str:
    protocols = [p for p in relharness.PROTOCOLS if any(r["protocol"] == p for r in results)]
    names = {"v2": "Flamenco 2.x", "v3": "Flamenco 3"}
    columns = {p: _column([r for r in results if r["protocol"] == p]) for p in protocols}
    head = ["| figure | " + " | ".join(names[p] for p in protocols) + " |", "|---|" + "---|" * len(protocols)]
    rows = [f"| {name} | " + " | ".join(str(columns[p][name]) for p in protocols) + " |"
            for name in columns[protocols[0]]]
    counts = {p: _kinds([r for r in results if r["protocol"] == p]) for p in protocols}
    kinds = sorted(set().union(*counts.values()))
    kind_rows = [f"| `{kind}` | " + " | ".join(str(counts[p][kind]) for p in protocols) + " |" for kind in kinds]
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    return "\n".join([f"Soak of {stamp}, {len(results)} runs (`python -m tests.reliability.soak`):", "",
                      *head, *rows, "", "| fault or hostile task | "
                      + " | ".join(names[p] for p in protocols) + " |", "|---|" + "---|" * len(protocols), *kind_rows])


def _column(results: list[dict]) -> dict[str, object]:
    short = [r for r in results if not r["long"]]
    long = [r for r in results if r["long"]]
    ratios = [r["rss"][-1] / r["rss"][0] for r in short if len(r["rss"]) >= 2]

    def total(key: str) -> int:
        return sum(r[key] for r in results)

    column: dict[str, object] = {
        "runs (seeded, with hostile cases)": len(short),
        "runs that passed every check": sum(1 for r in short if r["ok"]),
        "faults injected": sum(sum(r["faults"].values()) for r in results),
        "hostile tasks run": sum(len(r["hostile"]) for r in results),
        "updates produced (committed to the queue)": total("produced"),
        "updates delivered, in order": total("delivered"),
        "updates delivered twice (after a lost response or a restart)": total("duplicates"),
        "updates lost": total("lost"),
        "task processes left running (orphans)": total("orphans"),
        "second workers on the same queue refused (exit 6)": sum(r["double_starts"].count(6) for r in results),
        "event loop blocked, longest: the worker's own doing (all of it, CPU starvation included)":
            f"{max(r.get('hub_blocked_own_max', 0.0) for r in results):.3f} s "
            f"({max(r['hub_blocked_max'] for r in results):.3f} s)",
        "longest outage survived": f"{max(r['longest_outage'] for r in results):g} s",
        "worker RSS at the end / at work, median (max)":
            f"{statistics.median(ratios):.2f} ({max(ratios):.2f})" if ratios else "-",
        "total run time (runs one after the other)": f"{sum(r['seconds'] for r in results) / 60:.0f} min",
    }
    for r in long:
        if len(r["rss"]) >= 2:
            column[f"long run ({r['tasks']} tasks, no SIGKILL): worker RSS at work → at the end"] = \
                f"{r['rss'][0] / 2**20:.0f} → {r['rss'][-1] / 2**20:.0f} MiB" + ("" if r["ok"] else ", FAILED")
    return column


def _kinds(results: list[dict]) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for r in results:
        counts.update(r["faults"])
        counts.update(f"task: {kind}" for kind in r["hostile"])
    return counts


if __name__ == "__main__":
    sys.exit(main())
