"""3. Log throughput: a command printing N lines of 100 bytes (1,000,000 lines,
100 MB in --full) through the worker.

The child (children/logspam.py) times its own writes: its wall time under the
worker (an `exec` command, output through the pipe) vs. writing to /dev/null
(the baseline, same run), and its longest single write (a blocked write = a
full pipe the worker did not drain).  Reported beside it: the same child
writing into a pipe that a bare reader only empties (every 5 ms, as the worker
does while a child floods), the floor any reader of a pipe has on this machine.
The worker's RSS is sampled every 50 ms.
Afterwards every line is checked to be in the Manager's task log, in order.
"""
from __future__ import annotations

import fcntl
import json
import os
import shlex
import subprocess
import time

from bench import common

NAME = "logs"
TITLE = "Log throughput"

SETTINGS = {"task_types": "debug", "fetch_task_interval": 0.1}  # log settings: defaults (1 s / 1000 lines)
CHILD = os.path.join(common.ROOT, "bench", "children", "logspam.py")


def _bare(wd: common.Workdir, n: int) -> dict:
    out = os.path.join(wd.path, "bare.json")
    subprocess.run([common.PY, CHILD, str(n), out], stdout=subprocess.DEVNULL, check=True, timeout=600)
    with open(out, encoding="utf-8") as f:
        return json.load(f)


def _pipe_floor(wd: common.Workdir, n: int) -> dict:
    """The child into a 1 MiB pipe that this process empties every 5 ms, doing
    nothing with what it reads."""
    out = os.path.join(wd.path, "floor.json")
    read_end, write_end = os.pipe()
    fcntl.fcntl(read_end, fcntl.F_SETPIPE_SZ, 1024 * 1024)  # as the worker asks
    os.set_blocking(read_end, False)
    child = subprocess.Popen([common.PY, CHILD, str(n), out], stdout=write_end)
    os.close(write_end)
    try:
        while True:
            try:
                if not os.read(read_end, 1024 * 1024):
                    break
                continue  # more may be waiting: empty the pipe before sleeping
            except BlockingIOError:
                time.sleep(0.005)
    finally:
        os.close(read_end)
        child.wait(600)
    with open(out, encoding="utf-8") as f:
        return json.load(f)


def _check_log(manager: common.Manager, task_id: str, n: int) -> dict:
    """Every line 0..n-1 in the task's log, once, in order."""
    expected, bad = 0, 0
    with manager._db() as db:
        for (text,) in db.execute("SELECT log FROM task_updates WHERE task = ? AND log IS NOT NULL ORDER BY seq",
                                  (task_id,)):
            for line in text.split("\n"):
                _, sep, rest = line.partition("Z: ")
                if not sep or len(rest) != 99 or not rest[:7].isdigit():
                    continue  # the worker's own lines
                if int(rest[:7]) != expected:
                    bad += 1
                    expected = int(rest[:7])
                expected += 1
    return {"lines_delivered_in_order": expected == n and bad == 0, "last_line": expected - 1, "out_of_order": bad}


def _worker(ctx, wd: common.Workdir, n: int, run: int) -> dict:
    profiling = ctx.profile and run == 0
    out = os.path.join(wd.path, "child.json")
    with common.manager_and_worker(
            wd.sub("manager"), wd.sub("worker"), SETTINGS,
            manager_profile=ctx.profile_path("logs-manager") if profiling else None,
            worker_profile=ctx.profile_path(f"logs-{run}") if profiling else None) as (manager, worker):
        job = manager.submit({"name": "logs", "job_type": "debug", "tasks": [{
            "name": "spam", "task_type": "debug",
            "commands": [{"name": "exec", "settings": {"cmd": shlex.join([common.PY, CHILD, str(n), out])}}]}]})
        task_id = job["task_ids"][0]
        cpu0 = common.cpu_seconds(worker.ps)
        with common.Sampler(worker.ps, 0.05) as sampler:
            common.wait_until(lambda: manager.done(job["job_id"], 1), 900, "the log task done", interval=0.1)
        cpu = common.cpu_seconds(worker.ps) - cpu0
        peak = common.peak_rss(worker.pid)
        check = _check_log(manager, task_id, n)
    with open(out, encoding="utf-8") as f:
        child = json.load(f)
    trace = manager.trace()
    updates = [r for r in common.trace_rows(trace, "update") if r[2] == task_id]
    completed = max(r[1] for r in updates if r[4] == "completed")
    return {"child": child, "worker_cpu_s": cpu, "worker_peak_rss_mb": common.mb(max(sampler.peak, peak)),
            "worker_rss_sampled_peak_mb": common.mb(sampler.peak), "updates": len(updates),
            "delivery_lag_after_child_s": completed - child["end_monotonic"], **check}


def run(ctx) -> dict:
    n = 200_000 if ctx.quick else 1_000_000
    runs = ctx.runs(1, 3)
    bare_runs, floor_runs, worker_runs = [], [], []
    for r in range(runs):
        wd = common.Workdir(f"logs-{r}")
        try:
            ctx.log(f"logs: run {r + 1}/{runs}: {n} lines to /dev/null")
            bare_runs.append(_bare(wd, n))
            ctx.log(f"  /dev/null: {bare_runs[-1]['wall_s']:.2f} s")
            floor_runs.append(_pipe_floor(wd, n))
            ctx.log(f"  a pipe a bare reader empties: {floor_runs[-1]['wall_s']:.2f} s")
            ctx.log(f"logs: run {r + 1}/{runs}: {n} lines through the worker")
            worker_runs.append(_worker(ctx, wd, n, r))
            w = worker_runs[-1]
            ctx.log(f"  worker: {w['child']['wall_s']:.2f} s, longest write {1000 * w['child']['max_write_s']:.0f} ms, "
                    f"peak RSS {w['worker_peak_rss_mb']} MB, in order: {w['lines_delivered_in_order']}")
        finally:
            wd.cleanup()
    wall = common.median([w["child"]["wall_s"] for w in worker_runs])
    base = common.median([b["wall_s"] for b in bare_runs])
    floor = common.median([f["wall_s"] for f in floor_runs])
    rss = max(w["worker_peak_rss_mb"] for w in worker_runs)
    stall = max(w["child"]["max_write_s"] for w in worker_runs) * 1000
    in_order = all(w["lines_delivered_in_order"] for w in worker_runs)
    return {
        "params": {"lines": n, "bytes_per_line": 100, "runs": runs, "worker_settings": SETTINGS},
        "metrics": [
            {"metric": "child wall time under the worker / to /dev/null", "value": wall / base, "unit": "x",
             "baseline": base, "baseline_what": "seconds to /dev/null", "target": "<= 1.5", "met": wall / base <= 1.5,
             "detail": f"{wall:.2f} s vs {base:.2f} s"},
            {"metric": "same child, a pipe a bare reader empties every 5 ms / to /dev/null (the floor)",
             "value": floor / base, "unit": "x", "baseline": base, "baseline_what": "seconds to /dev/null",
             "target": "(reported)", "met": None, "detail": f"{floor:.2f} s vs {base:.2f} s"},
            {"metric": "worker peak RSS during the run", "value": rss, "unit": "MB", "target": "< 100 MB",
             "met": rss < 100},
            {"metric": "child's longest blocked write", "value": stall, "unit": "ms", "target": "<= 100 ms",
             "met": stall <= 100},
            {"metric": "all lines delivered, in order", "value": in_order, "unit": "", "target": "yes",
             "met": in_order},
        ],
        "runs": {"worker": worker_runs, "bare": bare_runs, "pipe_floor": floor_runs},
    }
