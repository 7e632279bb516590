"""6. Farm scale: 50 worker processes (10 in --quick) against one development
Manager on this machine, 2,000 one-`echo` tasks (300 in --quick).

Everything shares the 2 cores: the Manager (its own process, so it is not
starved by the benchmark), every worker, and the benchmark.

- Exactly once: every task is given out once (the Manager's trace), started
  once (one `starting echo` update) and completed once.
- Throughput: from the first task given out to the last `completed` received.
- Restart: with every worker idle (asking for work every `fetch_task_interval`),
  the Manager is stopped for 5 s and its port comes back.  Each worker's first
  request then is a retry out of its backoff; the jitter target is that no
  100 ms window holds more than 10 % of the workers' first requests.  Those
  are timestamped at accept() by children/probe.py (which answers 503), since
  the Python Manager itself serialises each worker's first request behind a
  ~15 ms PBKDF2 check and so bunches its own timestamps; then the Manager
  takes the port over again.
"""
from __future__ import annotations

import datetime
import json
import os
import subprocess
import time

from bench import common
from bench.b_tasks import echo_job

NAME = "farm"
TITLE = "Farm scale"

SETTINGS = {
    "task_types": "debug",
    "fetch_task_interval": 1.0,  # 50 idle workers: 50 polls/s on the Manager
    # backoff_initial 1 s, backoff_max 60 s, everything else: defaults
}
DOWNTIME = 5.0
PROBE = os.path.join(common.ROOT, "bench", "children", "probe.py")


def _wall_now() -> str:
    """Now in the Manager's last_seen format (ISO 8601 UTC, milliseconds)."""
    now = datetime.datetime.now(datetime.UTC)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _one(ctx, workers_n: int, tasks_n: int, r: int) -> dict:
    wd = common.Workdir(f"farm-{r}")
    manager = common.Manager(wd.sub("manager")).start()
    workers = [common.WorkerProc(wd.sub(f"w{i:02d}"), manager.url, SETTINGS, name=f"farm-{i:02d}")
               for i in range(workers_n)]
    try:
        t0 = time.monotonic()
        for w in workers:
            w.start()
        common.wait_until(lambda: manager.workers_awake() >= workers_n, 300, "every worker awake", interval=0.5)
        startup = time.monotonic() - t0
        ctx.log(f"  {workers_n} workers awake after {startup:.1f} s")
        job = manager.submit(echo_job(tasks_n, "farm"))
        rss = []
        common.wait_until(lambda: manager.done(job["job_id"], tasks_n), 120 + tasks_n, "every task done",
                          interval=0.25)
        rss = [w.ps.memory_info().rss for w in workers]
        time.sleep(2 * SETTINGS["fetch_task_interval"])  # all idle-polling again
        manager.stop()
        t_down = time.monotonic()
        time.sleep(DOWNTIME)
        # The port comes back: first the probe (children/probe.py) timestamps each
        # worker's first retry, then the Manager itself takes over.
        probe_out = os.path.join(wd.path, "probe.json")
        probe = subprocess.Popen([common.PY, PROBE, str(manager.port), str(workers_n), "20", probe_out],
                                 stdout=subprocess.PIPE, text=True, preexec_fn=common._die_with_parent)
        probe.stdout.readline()
        probe.wait(30)
        with open(probe_out, encoding="utf-8") as f:
            probed = json.load(f)
        restart_wall = _wall_now()
        manager.start()
        t_up = time.monotonic()
        # Every worker comes back out of its backoff (at most backoff_max later).
        common.wait_until(lambda: manager.query("SELECT COUNT(*) FROM workers WHERE last_seen >= ?",
                                                restart_wall)[0][0] >= workers_n, 90, "every worker back",
                          interval=0.5)
        time.sleep(1)
        counts = manager.status_counts(job["job_id"])
    finally:
        for w in workers:
            if w.proc is not None and w.proc.poll() is None:
                w.signal(15)
        for w in workers:
            w.stop(60)
        manager.stop()
    trace = manager.trace()
    wd.cleanup()
    ups = sorted(row[1] for row in common.trace_rows(trace, "up"))
    restart = ups[-1]
    gives = common.trace_rows(trace, "give")
    updates = common.trace_rows(trace, "update")
    given: dict[str, int] = {}
    for row in gives:
        given[row[2]] = given.get(row[2], 0) + 1
    starts: dict[str, int] = {}
    dones: dict[str, int] = {}
    for row in updates:
        if row[6].startswith("starting echo"):
            starts[row[2]] = starts.get(row[2], 0) + 1
        if row[4] == "completed":
            dones[row[2]] = dones.get(row[2], 0) + 1
    once = (len(given) == tasks_n and all(v == 1 for v in given.values())
            and len(dones) == tasks_n and all(v == 1 for v in dones.values())
            and all(v == 1 for v in starts.values()) and counts.get("completed") == tasks_n)
    first_give = min(row[1] for row in gives)
    last_done = max(row[1] for row in updates if row[4] == "completed")
    first_after: dict[str, float] = {}
    for row in common.trace_rows(trace, "req"):
        if row[1] >= restart and row[6] and row[6] not in first_after:
            first_after[row[6]] = row[1]
    arrivals = sorted(first_after.values())
    retries = sorted(t - probed["listening_at"] for t in probed["first"].values())
    peak = common.max_in_window(retries, 0.1)
    req_rows = [row for row in common.trace_rows(trace, "req") if first_give <= row[1] <= last_done]
    return {
        "workers": workers_n, "tasks": tasks_n, "startup_s": startup,
        "tasks_per_s": (tasks_n - 1) / (last_done - first_give), "seconds": last_done - first_give,
        "exactly_once": once, "gives_max": max(given.values()), "completed_max": max(dones.values()),
        "starts_max": max(starts.values()) if starts else 0, "final_counts": counts,
        "manager_busy_fraction": sum(row[2] for row in req_rows) / (last_done - first_give),
        "manager_request_p50_ms": 1000 * common.median([row[2] for row in req_rows]),
        "worker_rss_median_mb": common.mb(common.median(rss)),
        "restart_workers_seen": len(retries), "restart_max_in_100ms": peak,
        "restart_max_fraction_in_100ms": peak / workers_n,
        "restart_first_arrival_s": retries[0] if retries else None,
        "restart_spread_s": retries[-1] - retries[0] if retries else None,
        "restart_arrivals_s": [round(a, 3) for a in retries],
        # The Manager's own view once it is back: the first request it handled of each
        # worker (serialised behind its PBKDF2 check of each worker's first request).
        "manager_first_handled_s": [round(a - restart, 3) for a in arrivals],
        "manager_max_in_100ms": common.max_in_window(arrivals, 0.1),
        "downtime_s": t_up - t_down,
    }


def run(ctx) -> dict:
    workers_n, tasks_n = (10, 300) if ctx.quick else (50, 2000)
    runs = ctx.runs(1, 2)
    results = []
    for r in range(runs):
        ctx.log(f"farm: run {r + 1}/{runs}: {workers_n} workers, {tasks_n} tasks")
        results.append(_one(ctx, workers_n, tasks_n, r))
        x = results[-1]
        ctx.log(f"  {x['tasks_per_s']:.1f} tasks/s, exactly once: {x['exactly_once']}, restart: "
                f"{x['restart_max_in_100ms']}/{workers_n} workers in the busiest 100 ms, "
                f"spread {x['restart_spread_s']:.2f} s")
    rate = common.median([x["tasks_per_s"] for x in results])
    once = all(x["exactly_once"] for x in results)
    frac = max(x["restart_max_fraction_in_100ms"] for x in results)
    return {
        "params": {"workers": workers_n, "tasks": tasks_n, "runs": runs, "downtime_s": DOWNTIME,
                   "worker_settings": SETTINGS},
        "metrics": [
            {"metric": f"every task done exactly once ({workers_n} workers)", "value": once, "unit": "",
             "target": "yes", "met": once},
            {"metric": f"farm throughput ({workers_n} workers, {tasks_n} echo tasks)", "value": rate,
             "unit": "tasks/s", "target": "(reported)", "met": None},
            {"metric": "workers' first requests after a Manager restart, busiest 100 ms", "value": 100 * frac,
             "unit": "% of workers", "target": "<= 10 %", "met": frac <= 0.10},
        ],
        "runs": results,
    }
