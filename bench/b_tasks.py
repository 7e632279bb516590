"""2. Per-task overhead: many one-`echo` tasks through one worker.

Throughput: one job of N tasks (1,000 in --full), from the first task given
out to the last `completed` received by the Manager.  Baseline, in the same
run against an identical fresh Manager: the bare protocol client
(children/bareclient.py), which does the same job with 4 requests a task
and nothing else.

Latency: lone tasks submitted one at a time to an idle worker: queued on the
Manager -> `completed` received, and dispatch (the Manager gives the task
out) -> the worker starts the first command (its `command_started` event).
"""
from __future__ import annotations

import json
import os
import subprocess
import time

from bench import common

NAME = "tasks"
TITLE = "Per-task overhead"

SETTINGS = {
    "task_types": "debug",
    "fetch_task_interval": 0.1,  # idle polling; the default 2 s would dominate lone-task latency
}


def echo_job(n: int, name: str = "echo") -> dict:
    return {"name": name, "job_type": "debug", "priority": 50, "tasks": [
        {"name": f"t{i}", "task_type": "debug",
         "commands": [{"name": "echo", "settings": {"message": f"hello {i}"}}]} for i in range(n)]}


def _throughput_worker(ctx, n: int, run: int) -> dict:
    wd = common.Workdir(f"tasks-w{run}")
    profiling = ctx.profile and run == 0
    with common.manager_and_worker(
            wd.path, wd.sub("worker"), SETTINGS, events=True,
            manager_profile=ctx.profile_path("tasks-manager") if profiling else None,
            worker_profile=ctx.profile_path("tasks-worker") if profiling else None) as (manager, worker):
        cpu0 = common.cpu_seconds(worker.ps)
        job = manager.submit(echo_job(n))
        with common.Sampler(worker.ps, 0.1) as sampler:
            common.wait_until(lambda: manager.done(job["job_id"], n), 60 + n, "all tasks done", interval=0.1)
        cpu = common.cpu_seconds(worker.ps) - cpu0
    trace, events = manager.trace(), worker.events()
    wd.cleanup()
    gives = {row[2]: row[1] for row in common.trace_rows(trace, "give")}
    completed = {row[2]: row[1] for row in common.trace_rows(trace, "update") if row[4] == "completed"}
    started = {row[2]: row[0] for row in events if row[1] == "command_started" and row[3] == 0}
    first, last = min(gives.values()), max(completed.values())
    dispatch_to_cmd = [started[t] - gives[t] for t in gives if t in started]
    dispatch_to_done = [completed[t] - gives[t] for t in gives if t in completed]
    requests_ = common.trace_rows(trace, "req")
    updates = [r for r in requests_ if r[4] == "/tasks/*/update"]
    service = sum(r[2] for r in requests_ if r[1] >= first and r[1] <= last)
    return {
        "tasks": len(completed), "seconds": last - first, "tasks_per_s": (len(completed) - 1) / (last - first),
        "dispatch_to_first_command_p50_ms": 1000 * common.median(dispatch_to_cmd),
        "dispatch_to_first_command_p95_ms": 1000 * common.percentile(dispatch_to_cmd, 95),
        "dispatch_to_completed_p50_ms": 1000 * common.median(dispatch_to_done),
        "update_requests_per_task": len(updates) / max(1, len(completed)),
        "requests_per_task": len([r for r in requests_ if first <= r[1] <= last]) / max(1, len(completed)),
        "manager_busy_fraction": service / (last - first),
        "worker_cpu_per_task_ms": 1000 * cpu / max(1, len(completed)),
        "worker_peak_rss_mb": common.mb(sampler.peak),
    }


def _throughput_bare(ctx, n: int, run: int) -> dict:
    wd = common.Workdir(f"tasks-b{run}")
    manager = common.Manager(wd.path).start()
    out = os.path.join(wd.path, "bare.json")
    try:
        job = manager.submit(echo_job(n))
        subprocess.run([common.PY, os.path.join(common.ROOT, "bench", "children", "bareclient.py"), manager.url, out],
                       check=True, timeout=60 + n)
        assert manager.done(job["job_id"], n)
    finally:
        manager.stop()
    with open(out, encoding="utf-8") as f:
        bare = json.load(f)
    trace = manager.trace()
    wd.cleanup()
    gives = [row[1] for row in common.trace_rows(trace, "give")]
    completed = [row[1] for row in common.trace_rows(trace, "update") if row[4] == "completed"]
    seconds = max(completed) - min(gives)
    return {"tasks": bare["tasks"], "seconds": seconds, "tasks_per_s": (len(completed) - 1) / seconds,
            "fetch_p50_ms": 1000 * common.median(bare["fetch_times"])}


def _latency(ctx, count: int) -> dict:
    """Lone tasks, one at a time, to an idle worker."""
    wd = common.Workdir("tasks-lat")
    with common.manager_and_worker(wd.path, wd.sub("worker"), SETTINGS, events=True) as (manager, worker):
        for i in range(count):
            job = manager.submit(echo_job(1, f"lone-{i}"))
            common.wait_until(lambda job=job: manager.done(job["job_id"], 1), 30, "the task done", interval=0.005)
            time.sleep(0.05)
    trace, events = manager.trace(), worker.events()
    job_of = dict(manager.query("SELECT id, job FROM tasks"))
    wd.cleanup()
    submits = {}
    gives = {row[2]: row[1] for row in common.trace_rows(trace, "give")}
    completed = {row[2]: row[1] for row in common.trace_rows(trace, "update") if row[4] == "completed"}
    started = {row[2]: row[0] for row in events if row[1] == "command_started" and row[3] == 0}
    # One task per job: the job's submit time is its task's queued time.
    for row in common.trace_rows(trace, "submit"):
        submits[row[2]] = row[1]
    queued_to_done = [completed[t] - submits[job_of[t]] for t in completed if job_of.get(t) in submits]
    queued_to_given = [gives[t] - submits[job_of[t]] for t in gives if job_of.get(t) in submits]
    given_to_done = [completed[t] - gives[t] for t in completed if t in gives]
    d2c = [started[t] - gives[t] for t in gives if t in started]
    return {
        "tasks": len(completed),
        "queued_to_completed_p50_ms": 1000 * common.median(queued_to_done),
        "queued_to_completed_p95_ms": 1000 * common.percentile(queued_to_done, 95),
        "queued_to_dispatched_p50_ms": 1000 * common.median(queued_to_given),
        "dispatch_to_first_command_p50_ms": 1000 * common.median(d2c),
        "dispatch_to_first_command_p95_ms": 1000 * common.percentile(d2c, 95),
        "dispatch_to_completed_p50_ms": 1000 * common.median(given_to_done),
    }


def run(ctx) -> dict:
    n = 200 if ctx.quick else 1000
    lone = 20 if ctx.quick else 100
    runs = ctx.runs(1, 3)
    worker_runs, bare_runs = [], []
    for r in range(runs):
        ctx.log(f"tasks: run {r + 1}/{runs}: bare client, {n} tasks")
        bare_runs.append(_throughput_bare(ctx, n, r))
        ctx.log(f"  bare: {bare_runs[-1]['tasks_per_s']:.1f} tasks/s")
        ctx.log(f"tasks: run {r + 1}/{runs}: worker, {n} tasks")
        worker_runs.append(_throughput_worker(ctx, n, r))
        ctx.log(f"  worker: {worker_runs[-1]['tasks_per_s']:.1f} tasks/s, dispatch->first command p50 "
                f"{worker_runs[-1]['dispatch_to_first_command_p50_ms']:.1f} ms")
    ctx.log(f"tasks: {lone} lone tasks, one at a time")
    latency = _latency(ctx, lone)
    rate = common.median([w["tasks_per_s"] for w in worker_runs])
    bare_rate = common.median([b["tasks_per_s"] for b in bare_runs])
    d2c = common.median([w["dispatch_to_first_command_p50_ms"] for w in worker_runs])
    return {
        "params": {"tasks": n, "runs": runs, "lone_tasks": lone, "worker_settings": SETTINGS},
        "metrics": [
            {"metric": "tasks/s, one worker (echo tasks)", "value": rate, "unit": "tasks/s",
             "baseline": bare_rate, "baseline_what": "bare protocol client, 4 requests/task",
             "ratio": rate / bare_rate, "target": ">= 50 tasks/s", "met": rate >= 50},
            {"metric": "dispatch -> first command, p50 (during throughput run)", "value": d2c, "unit": "ms",
             "target": "< 20 ms", "met": d2c < 20},
            {"metric": "dispatch -> first command, p50 (lone task)",
             "value": latency["dispatch_to_first_command_p50_ms"], "unit": "ms", "target": "< 20 ms",
             "met": latency["dispatch_to_first_command_p50_ms"] < 20},
            {"metric": "queued -> completed received, p50 (lone task)",
             "value": latency["queued_to_completed_p50_ms"], "unit": "ms",
             "baseline": common.median([b["fetch_p50_ms"] for b in bare_runs]),
             "baseline_what": "one bare POST /task round trip",
             "target": "(reported)", "met": None},
        ],
        "runs": {"worker": worker_runs, "bare": bare_runs, "latency": latency},
    }
