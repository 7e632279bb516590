"""2. Per-task overhead: many one-`echo` tasks through one worker.

Throughput: one job of N tasks (1,000 in --full), from the first task given
out to the last `completed` received by the Manager.  Baseline, in the same
run against an identical fresh Manager: the bare protocol client
(children/bareclient.py), which does the same job with 4 requests a task
and nothing else.

Latency: lone tasks submitted one at a time to an idle worker: queued on the
Manager -> `completed` received, and dispatch (the Manager gives the task
out) -> the worker starts the first command (its `command_started` event).

Both again against the Flamenco 3 development Manager (the same one-`echo`
tasks in its job format, the worker speaking v3), in the same run: its
baseline is the worker's figure against the 2.x Manager.
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


# The worker's settings against the Flamenco 3 Manager: its echo tasks are "misc".
SETTINGS_V3 = {**SETTINGS, "task_types": "misc"}
UPDATE_PATHS = ("/tasks/*/update", "/api/v3/worker/task/*")


def echo_job(n: int, name: str = "echo", protocol: str = "v2") -> dict:
    if protocol == "v3":
        return common.v3_job(name, [(f"t{i}", "misc", [common.v3_command("echo", message=f"hello {i}")])
                                    for i in range(n)])
    return {"name": name, "job_type": "debug", "priority": 50, "tasks": [
        {"name": f"t{i}", "task_type": "debug",
         "commands": [{"name": "echo", "settings": {"message": f"hello {i}"}}]} for i in range(n)]}


def _throughput_worker(ctx, n: int, run: int, protocol: str = "v2") -> dict:
    wd = common.Workdir(f"tasks-w{run}-{protocol}")
    profiling = ctx.profile and run == 0 and protocol == "v2"
    with common.manager_and_worker(
            wd.path, wd.sub("worker"), SETTINGS_V3 if protocol == "v3" else SETTINGS, events=True,
            manager_profile=ctx.profile_path("tasks-manager") if profiling else None,
            worker_profile=ctx.profile_path("tasks-worker") if profiling else None,
            protocol=protocol) as (manager, worker):
        cpu0 = common.cpu_seconds(worker.ps)
        job = manager.submit(echo_job(n, protocol=protocol))
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
    updates = [r for r in requests_ if r[3] == "POST" and r[4] in UPDATE_PATHS]
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


def _latency(ctx, count: int, protocol: str = "v2") -> dict:
    """Lone tasks, one at a time, to an idle worker."""
    wd = common.Workdir(f"tasks-lat-{protocol}")
    settings = SETTINGS_V3 if protocol == "v3" else SETTINGS
    with common.manager_and_worker(wd.path, wd.sub("worker"), settings, events=True,
                                   protocol=protocol) as (manager, worker):
        for i in range(count):
            job = manager.submit(echo_job(1, f"lone-{i}", protocol))
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
    v3_runs = []
    for r in range(runs):
        ctx.log(f"tasks: run {r + 1}/{runs}: worker, {n} tasks, Flamenco 3 development Manager")
        v3_runs.append(_throughput_worker(ctx, n, r, "v3"))
        ctx.log(f"  worker (v3): {v3_runs[-1]['tasks_per_s']:.1f} tasks/s, dispatch->first command p50 "
                f"{v3_runs[-1]['dispatch_to_first_command_p50_ms']:.1f} ms")
    ctx.log(f"tasks: {lone} lone tasks, one at a time")
    latency = _latency(ctx, lone)
    ctx.log(f"tasks: {lone} lone tasks, one at a time, Flamenco 3 development Manager")
    latency_v3 = _latency(ctx, lone, "v3")
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
            *_v3_metrics(v3_runs, latency_v3, rate),
        ],
        "runs": {"worker": worker_runs, "bare": bare_runs, "latency": latency,
                 "worker_v3": v3_runs, "latency_v3": latency_v3},
    }


def _v3_metrics(runs: list[dict], latency: dict, rate_v2: float) -> list[dict]:
    """The same figures against the Flamenco 3 development Manager."""
    rate = common.median([w["tasks_per_s"] for w in runs])
    d2c = common.median([w["dispatch_to_first_command_p50_ms"] for w in runs])
    lone = latency["dispatch_to_first_command_p50_ms"]
    return [
        {"metric": "Flamenco 3: tasks/s, one worker (echo tasks)", "value": rate, "unit": "tasks/s",
         "baseline": rate_v2, "baseline_what": "the same worker against the 2.x Manager",
         "ratio": rate / rate_v2, "target": ">= 50 tasks/s", "met": rate >= 50},
        {"metric": "Flamenco 3: dispatch -> first command, p50 (during throughput run)", "value": d2c,
         "unit": "ms", "target": "< 20 ms", "met": d2c < 20},
        {"metric": "Flamenco 3: dispatch -> first command, p50 (lone task)", "value": lone, "unit": "ms",
         "target": "< 20 ms", "met": lone < 20},
        {"metric": "Flamenco 3: queued -> completed received, p50 (lone task)",
         "value": latency["queued_to_completed_p50_ms"], "unit": "ms", "target": "(reported)", "met": None},
    ]
