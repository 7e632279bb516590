"""5. Idle footprint: an awake worker with nothing to do, over 60 s (15 s in
--quick), with the default settings (it asks for a task every 2 s, jittered).

CPU: user + system time of the worker process over the window, after start-up.
Memory: the kernel's peak RSS of the process (VmHWM), start-up included.
Baseline (same run, same window): children/floor.py, a process that imports
gevent, requests, configobj and dataset, opens an SQLite table and sleeps.
"""
from __future__ import annotations

import os
import subprocess
import time

from bench import common

NAME = "idle"
TITLE = "Idle footprint"

SETTINGS = {"task_types": "debug"}  # everything else: defaults (fetch_task_interval 2 s)
FLOOR = os.path.join(common.ROOT, "bench", "children", "floor.py")


def _one(ctx, window: float, r: int) -> dict:
    wd = common.Workdir(f"idle-{r}")
    profile = ctx.profile_path(f"idle-{r}") if ctx.profile and r == 0 else None
    floor = subprocess.Popen([common.PY, FLOOR, os.path.join(wd.path, "floor.sqlite"), str(window + 30)],
                             stdout=subprocess.PIPE, text=True, preexec_fn=common._die_with_parent)
    try:
        with common.manager_and_worker(wd.sub("manager"), wd.sub("worker"), SETTINGS,
                                       worker_profile=profile) as (manager, worker):
            floor.stdout.readline()
            time.sleep(2)  # past start-up
            floor_ps = common.psutil.Process(floor.pid)
            w0, f0, t0 = common.cpu_seconds(worker.ps), common.cpu_seconds(floor_ps), time.monotonic()
            time.sleep(window)
            w1, f1, t1 = common.cpu_seconds(worker.ps), common.cpu_seconds(floor_ps), time.monotonic()
            result = {
                "window_s": t1 - t0,
                "worker_cpu_percent": 100 * (w1 - w0) / (t1 - t0), "floor_cpu_percent": 100 * (f1 - f0) / (t1 - t0),
                "worker_peak_rss_mb": common.mb(common.peak_rss(worker.pid)),
                "floor_peak_rss_mb": common.mb(common.peak_rss(floor.pid)),
                "worker_rss_now_mb": common.mb(worker.ps.memory_info().rss),
                "floor_rss_now_mb": common.mb(floor_ps.memory_info().rss),
            }
    finally:
        floor.kill()
        floor.wait()
    polls = [row for row in common.trace_rows(manager.trace(), "req") if t0 <= row[1] <= t1]
    result["requests_per_minute"] = 60 * len(polls) / (t1 - t0)
    wd.cleanup()
    return result


def run(ctx) -> dict:
    window = 15.0 if ctx.quick else 60.0
    runs = ctx.runs(1, 3)
    results = []
    for r in range(runs):
        ctx.log(f"idle: run {r + 1}/{runs}: {window:g} s")
        results.append(_one(ctx, window, r))
        x = results[-1]
        ctx.log(f"  worker {x['worker_cpu_percent']:.3f} % CPU, peak RSS {x['worker_peak_rss_mb']} MB; "
                f"floor {x['floor_cpu_percent']:.3f} %, {x['floor_peak_rss_mb']} MB")
    cpu = common.median([x["worker_cpu_percent"] for x in results])
    rss = common.median([x["worker_peak_rss_mb"] for x in results])
    floor_rss = common.median([x["floor_peak_rss_mb"] for x in results])
    return {
        "params": {"window_s": window, "runs": runs, "worker_settings": SETTINGS},
        "metrics": [
            {"metric": "idle CPU, % of one core", "value": cpu, "unit": "%",
             "baseline": common.median([x["floor_cpu_percent"] for x in results]), "baseline_what": "floor process, %",
             "target": "< 0.5 %", "met": cpu < 0.5},
            {"metric": "peak RSS / floor", "value": rss / floor_rss, "unit": "x", "baseline": floor_rss,
             "baseline_what": "floor peak RSS, MB", "target": "<= 1.15", "met": rss / floor_rss <= 1.15,
             "detail": f"{rss} MB vs {floor_rss} MB"},
        ],
        "runs": results,
    }
