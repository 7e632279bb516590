"""4. Outage drain: 20,000 updates queued while the Manager is down, then the
time to deliver them all once it is back.

A real task makes the updates: the worker runs it, the Manager is stopped
(SIGTERM), the task's child prints lines until the worker's SQLite queue
holds >= 20,000 updates, and the Manager is started again (same database,
same port).  Two kinds of output:

- ``log``: plain lines, `push_log_max_interval = 0` so that every line is its
  own update: the best case, consecutive log updates coalesce (200 a request);
- ``blender``: Blender-like progress lines through the `blender_render`
  command (a fake Blender), `push_act_max_interval = 0`, `activity_interval = 0`:
  each line gives a log, a progress and an activity update, which coalesce
  far less; the realistic case.

Drain rate = updates queued / (last update received - Manager back up).
Baseline (same run): a bare client replaying the very requests the worker
sent (same bodies' sizes and fields) to a fresh Manager.  The worker's RSS is
sampled throughout.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import time

from bench import common

NAME = "outage"
TITLE = "Outage drain"

SETTINGS = {
    "task_types": "debug",
    "fetch_task_interval": 0.1,
    "backoff_initial": 0.1,
    "backoff_max": 0.5,  # how soon the worker notices the Manager is back: at most 0.5 s
    "push_log_max_interval": 0,
    "push_act_max_interval": 0,
    "activity_interval": 0,
    "may_i_run_interval": 1,
    "shutdown_flush_timeout": 30,
}
CHILD = os.path.join(common.ROOT, "bench", "children", "outagechild.py")


def _job(mode: str, stop: str, wd: common.Workdir) -> dict:
    if mode == "log":
        cmd = {"name": "exec", "settings": {"cmd": shlex.join([common.PY, CHILD, "plain", stop])}}
    else:
        blend = os.path.join(wd.path, "scene.blend")
        open(blend, "wb").close()
        cmd = {"name": "blender_render", "settings": {
            "blender_cmd": shlex.join([common.PY, CHILD, "blender", stop]), "filepath": blend}}
    return {"name": f"outage-{mode}", "job_type": "debug", "tasks": [{"name": "t", "task_type": "debug",
                                                                     "commands": [cmd]}]}


def _replay_bodies(updates: list[list]) -> list[dict]:
    bodies = []
    for row in updates:
        _, _, _, _, _status, idx, activity, lines, _first, length, cmd_progress, task_progress = row
        body: dict = {}
        if length:
            per = max(1, length // max(1, lines))
            body["log"] = "\n".join(["y" * (per - 1)] * lines)[:length]
        if activity:
            body["activity"] = activity
        if idx is not None:
            body["current_command_idx"] = idx
        if cmd_progress is not None:
            body["command_progress_percentage"] = cmd_progress
        if task_progress is not None:
            body["task_progress_percentage"] = task_progress
        bodies.append(body)
    return bodies


def _baseline(bodies: list[dict], r: int) -> dict:
    wd = common.Workdir(f"outage-replay-{r}")
    manager = common.Manager(wd.path).start()
    try:
        manager.submit({"name": "replay", "job_type": "debug", "tasks": [
            {"name": "t", "task_type": "debug", "commands": [{"name": "echo", "settings": {"message": "x"}}]}]})
        path, out = os.path.join(wd.path, "bodies.json"), os.path.join(wd.path, "replay.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(bodies, f)
        subprocess.run([common.PY, os.path.join(common.ROOT, "bench", "children", "replay.py"), manager.url, path, out],
                       check=True, timeout=600)
        with open(out, encoding="utf-8") as f:
            return json.load(f)
    finally:
        manager.stop()
        wd.cleanup()


def _one(ctx, mode: str, target: int, r: int) -> dict:
    wd = common.Workdir(f"outage-{mode}-{r}")
    profile = ctx.profile_path(f"outage-{mode}-{r}") if ctx.profile and r == 0 else None
    stop = os.path.join(wd.path, "stop")
    with common.manager_and_worker(wd.sub("manager"), wd.sub("worker"), SETTINGS,
                                   worker_profile=profile) as (manager, worker):
        job = manager.submit(_job(mode, stop, wd))
        task_id = job["task_ids"][0]
        with common.Sampler(worker.ps, 0.1) as sampler:
            common.wait_until(lambda: manager.status_counts(job["job_id"]).get("active"), 30, "the task to start")
            time.sleep(0.3)
            manager.stop()
            t_down = time.monotonic()
            common.wait_until(lambda: worker.queued() >= target, 600, f"{target} updates queued", interval=0.02)
            with open(stop, "w"):
                pass
            # The child sees the stop file within 50 lines, but the worker may still be
            # handling what it spooled (fworker.spool): every update must be queued
            # before the Manager comes back, or the drain would time their making too.
            queued = _settled(worker)
            t_queued = time.monotonic()
            rss_before = sampler.at(t_down)
            manager.start()
            common.wait_until(lambda: manager.done(job["job_id"], 1) and worker.queued() == 0, 600,
                              "the queue drained", interval=0.05)
            t_done = time.monotonic()
            rss_end = sampler.at(t_done)
        peak = max(rss for t, rss in sampler.series if t >= t_down)
    trace = manager.trace()
    wd.cleanup()
    ups = [row[1] for row in common.trace_rows(trace, "up")]
    t_up_manager = max(ups)  # the restart
    after = [row for row in common.trace_rows(trace, "update") if row[1] >= t_up_manager and row[2] == task_id]
    last = max(row[1] for row in after)
    first = min(row[1] for row in after)
    drain = last - t_up_manager
    return {
        "queued": queued, "queue_fill_s": t_queued - t_down, "requests_after_restart": len(after),
        "updates_per_request": queued / max(1, len(after)),
        "drain_s": drain, "drain_from_first_request_s": last - first, "first_request_after_up_s": first - t_up_manager,
        "updates_per_s": queued / drain, "updates_per_s_from_first_request": queued / max(1e-9, last - first),
        "rss_at_outage_mb": common.mb(rss_before), "rss_peak_mb": common.mb(peak),
        "rss_after_drain_mb": common.mb(rss_end),
        "bodies": _replay_bodies(after),
    }


def _settled(worker, quiet: float = 1.0) -> int:
    """The queue depth once it has not grown for ``quiet`` seconds."""
    depth, since = worker.queued(), time.monotonic()
    deadline = since + 300
    while time.monotonic() - since < quiet:
        if time.monotonic() > deadline:
            raise TimeoutError("the worker's queue kept growing for 300 s after the child was told to stop")
        time.sleep(0.1)
        now = worker.queued()
        if now != depth:
            depth, since = now, time.monotonic()
    return depth


def run(ctx) -> dict:
    target = 20_000
    runs = ctx.runs(1, 2)
    results: dict[str, list] = {"log": [], "blender": []}
    baselines: dict[str, list] = {"log": [], "blender": []}
    for r in range(runs):
        for mode in ("log", "blender"):
            ctx.log(f"outage: run {r + 1}/{runs}, {mode} updates: filling the queue with {target}")
            one = _one(ctx, mode, target, r)
            bodies = one.pop("bodies")
            base = _baseline(bodies, r)
            one["baseline_s"] = base["seconds"]
            results[mode].append(one)
            baselines[mode].append(base)
            ctx.log(f"  {one['queued']} updates drained in {one['drain_s']:.2f} s ({one['updates_per_s']:.0f}/s, "
                    f"{one['requests_after_restart']} requests); bare replay {base['seconds']:.2f} s; "
                    f"RSS {one['rss_at_outage_mb']} -> peak {one['rss_peak_mb']} -> {one['rss_after_drain_mb']} MB")
    metrics = []
    for mode, label in (("log", "log lines (coalescable)"), ("blender", "Blender progress (log+progress+activity)")):
        rate = common.median([x["updates_per_s"] for x in results[mode]])
        drain = common.median([x["drain_s"] for x in results[mode]])
        base = common.median([x["seconds"] for x in baselines[mode]])
        peak = max(x["rss_peak_mb"] for x in results[mode])
        start = min(x["rss_at_outage_mb"] for x in results[mode])
        metrics.append({"metric": f"drain rate, {label}", "value": rate, "unit": "updates/s",
                        "baseline": base, "baseline_what": "s for a bare client to replay the same requests",
                        "ratio": drain / base, "target": ">= 2000 updates/s", "met": rate >= 2000,
                        "detail": f"{drain:.2f} s for the queue, bare replay {base:.2f} s"})
        metrics.append({"metric": f"worker RSS growth over the outage, {label}", "value": peak - start, "unit": "MB",
                        "target": "flat (< 10 MB)", "met": peak - start < 10,
                        "detail": f"{start} MB at outage start, peak {peak} MB"})
    return {"params": {"updates": target, "runs": runs, "worker_settings": SETTINGS},
            "metrics": metrics, "runs": {"worker": results, "bare": baselines}}
