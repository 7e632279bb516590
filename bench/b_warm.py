"""7. Warm Blender: one-frame render tasks of one slow-loading file, with the scene kept
loaded (``warm_blender = true``) against a fresh Blender per task, in the same run.

The scene (tests/support/warm_scene_script.py): the tiny animated Cycles scene (48x27,
4 samples) plus a hidden ico sphere of subdivision level 9 (~2.6 M faces, never
rendered) and a packed 4096x4096 image: ~130 MB on disk, a few seconds to load, a
fraction of a second to render.

Three parts, all in one run:
- Flamenco 2.x: one worker, one job of N one-frame ``blender_render`` tasks (frames
  cycling 1..3), fresh first, then warm.  Time from the job's submission to its last
  task completed (the Manager's trace), divided by N; the memory of the worker plus all
  its descendants (Blender included), sampled every 50 ms, and its peak per task.
- Flamenco 3: the same through the Flamenco 3 development Manager, each task one
  ``blender-render`` command with the command line of Flamenco 3.9's stock "Simple
  Blender Render" job (``-b -y``, ``--scene``, its render-settings ``--python-expr``,
  output, format, frame).
- A single task: one-task jobs on a worker with ``warm_blender = false`` and on one with
  ``true`` whose warm Blender has stopped (idle) before each: its first task, which can
  reuse nothing, so what the setting costs a farm whose jobs never repeat a file.
  Alternated, median of the runs.

The warm figures include their one load (the first task loads the file).
"""
from __future__ import annotations

import os
import shutil
import subprocess

from bench import common

NAME = "warm"
TITLE = "Warm Blender"
SCRIPT = os.path.join(common.ROOT, "tests", "support", "warm_scene_script.py")
SETTINGS = {"task_types": "blender", "fetch_task_interval": 0.1}
# What Flamenco 3.9's stock job type puts in every render task's args: its render settings.
STOCK_PY_EXPR = ("import bpy; r = bpy.context.scene.render; r.use_file_extension = True; "
                 "r.use_overwrite = False; r.use_placeholder = False")
# Memory: flat when the peak over the last quarter of the tasks is at most this times the
# peak over the tasks of the first half after the first (the first loads the file).
FLAT = 1.1


def make_scene(folder: str, levels: int, image: int) -> str:
    subprocess.run(["blender", "--background", "--factory-startup", "-noaudio", "--python", SCRIPT, "--",
                    folder, str(levels), str(image)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True, timeout=600)
    return os.path.join(folder, "scene a.blend")


def job_v2(blender: str, scene: str, out_dir: str, tasks: int) -> dict:
    return {"name": "warm", "job_type": "blender", "tasks": [{
        "name": f"frame {i}", "task_type": "blender", "commands": [{"name": "blender_render", "settings": {
            "blender_cmd": blender, "filepath": scene, "render_output": os.path.join(out_dir, f"t{i:03d}_####"),
            "format": "PNG", "frames": str(1 + i % 3)}}]} for i in range(tasks)]}


def stock_render_v3(blender: str, scene: str, output: str, frames: str) -> dict:
    """A render task's command as Flamenco 3.9's Simple Blender Render writes it, its
    ``{blender}`` and ``{blenderArgs}`` expanded to the Manager's defaults."""
    return common.v3_command("blender-render", 1, exe=blender, exeArgs="-b -y", argsBefore=[], blendfile=scene,
                             args=["--scene", "Scene", "--python-expr", STOCK_PY_EXPR, "--render-output", output,
                                   "--render-format", "PNG", "--render-frame", frames])


def job_v3(blender: str, scene: str, out_dir: str, tasks: int) -> dict:
    return common.v3_job("warm", [
        (f"frame {i}", "blender", [stock_render_v3(blender, scene, os.path.join(out_dir, f"t{i:03d}_######"),
                                                   str(1 + i % 3))]) for i in range(tasks)])


JOBS = {"v2": job_v2, "v3": job_v3}


def _timeline(trace: list[list], job: dict) -> tuple[float, list[float]]:
    """When ``job`` (as the Manager answered its submission) was submitted, and when each
    of its tasks was first reported completed, in order (the Manager's clock, which every
    process shares)."""
    submitted = next(row[1] for row in common.trace_rows(trace, "submit") if row[2] == job["job_id"])
    tasks = set(job["task_ids"])
    first: dict[str, float] = {}
    for row in common.trace_rows(trace, "update"):
        if row[4] == "completed" and row[2] in tasks:
            first.setdefault(row[2], row[1])
    return submitted, sorted(first.values())


def per_task_peaks(series: list[tuple[float, int]], start: float, ends: list[float]) -> list[int]:
    """The peak of the samples in each task's window: from the previous task's end (or
    ``start``) to its own.  A window without a sample gets the nearest earlier one."""
    peaks, lo, last = [], start, 0
    for end in ends:
        window = [rss for t, rss in series if lo < t <= end]
        before = [rss for t, rss in series if t <= end]
        last = max(window) if window else (before[-1] if before else last)
        peaks.append(last)
        lo = end
    return peaks


def _mode(wd: common.Workdir, protocol: str, blender: str, scene: str, tasks: int, warm: bool) -> dict:
    name = f"{protocol}-{'warm' if warm else 'fresh'}"
    settings = dict(SETTINGS, warm_blender="true" if warm else "false", warm_blender_max_tasks=1000)
    out_dir = wd.sub(f"out-{name}")
    with common.manager_and_worker(wd.sub(f"manager-{name}"), wd.sub(f"worker-{name}"), settings,
                                   protocol=protocol) as (manager, worker):
        with common.Sampler(worker.ps, tree=True) as sampler:
            job = manager.submit(JOBS[protocol](blender, scene, out_dir, tasks))
            common.wait_until(lambda: manager.done(job["job_id"], tasks), 3600, f"the {name} job", interval=0.05)
        worker_peak = common.peak_rss(worker.pid)
    submitted, ends = _timeline(manager.trace(), job)
    assert len(ends) == tasks, f"{name}: {len(ends)} tasks completed of {tasks}"
    saved = len(os.listdir(out_dir))
    assert saved == tasks, f"{name}: {saved} frames saved for {tasks} tasks"
    wall = ends[-1] - submitted
    return {"wall_s": wall, "per_task_s": wall / tasks, "peak_tree_rss": sampler.peak,
            "worker_peak_rss": worker_peak, **memory(sampler.series, submitted, ends)}


def memory(series: list[tuple[float, int]], submitted: float, ends: list[float]) -> dict:
    """Memory over a run: per task, and the figures of the flat check."""
    peaks = per_task_peaks(series, submitted, ends)
    samples = [rss for _, rss in series]
    quarter, half = max(1, len(peaks) // 4), max(2, len(peaks) // 2)
    return {
        "task_peaks_mb": [common.mb(p) for p in peaks],
        "loaded_rss": peaks[0],  # at the end of the first task: the file loaded, one frame rendered
        "end_rss": peaks[-1],
        "after_load_peak": max(peaks[1:half], default=peaks[0]),
        "last_quarter_peak": max(peaks[-quarter:]),
        # The check before this one, kept for comparison: halves of the sampled time, load included.
        "first_half_time_peak": max(samples[:len(samples) // 2], default=0),
    }


def _single_job(manager: common.Manager, mode: str, blender: str, scene: str, out_dir: str, index: int) -> dict:
    job = job_v2(blender, scene, out_dir, 1)
    job["tasks"][0]["commands"][0]["settings"]["render_output"] = os.path.join(out_dir, f"{mode}{index:02d}_####")
    done = manager.submit(job)
    common.wait_until(lambda: manager.done(done["job_id"], 1), 600, "the single task", interval=0.05)
    return done


def single_task(wd: common.Workdir, blender: str, scene: str, runs: int, ctx) -> dict:
    """One-task jobs, alternately on a worker without the warm Blender and on one with it
    whose warm Blender stopped (idle) before each: what a first task pays for the setting."""
    out_dir = wd.sub("out-single")
    fresh_settings = dict(SETTINGS, warm_blender="false")
    warm_settings = dict(SETTINGS, warm_blender="true", warm_blender_idle_timeout=0.5)
    jobs: dict[str, list[dict]] = {"fresh": [], "warm": []}
    with common.manager_and_worker(wd.sub("manager-single-fresh"), wd.sub("worker-single-fresh"),
                                   fresh_settings) as (fresh_m, _), \
            common.manager_and_worker(wd.sub("manager-single-warm"), wd.sub("worker-single-warm"),
                                      warm_settings) as (warm_m, warm_w):
        managers = {"fresh": fresh_m, "warm": warm_m}
        for r in range(runs):
            for mode in ("fresh", "warm") if r % 2 == 0 else ("warm", "fresh"):
                # Nothing to reuse, and nothing stopping while a task is timed: the warm
                # Blender of the last warm task has stopped (idle).
                common.wait_until(lambda: not warm_w.ps.children(), 120, "the idle warm Blender to stop")
                jobs[mode].append(_single_job(managers[mode], mode, blender, scene, out_dir, len(jobs[mode])))
            ctx.log(f"warm: single task, run {r + 1}/{runs}")
    started = warm_w.log_text().count("started warm Blender pid")
    assert started == runs, f"{started} warm Blenders started for {runs} single tasks: one reused another's"
    times = {}
    for mode, manager in managers.items():
        trace = manager.trace()
        times[mode] = [ends[-1] - submitted for submitted, ends in (_timeline(trace, j) for j in jobs[mode])]
    ratios = [w / f for w, f in zip(times["warm"], times["fresh"], strict=True)]
    return {"fresh_s": times["fresh"], "warm_s": times["warm"], "ratios": ratios}


def run(ctx) -> dict:
    blender = shutil.which("blender")
    if not blender:
        raise RuntimeError("blender is not installed (apt-get install blender)")
    tasks = 20 if ctx.quick else 100
    single_runs = ctx.runs(5, 7)  # pairs: fewer scatter too much on a busy machine
    levels, image = 9, 4096
    wd = common.Workdir("warm")
    scene = make_scene(wd.path, levels, image)
    ctx.log(f"warm: scene {os.path.getsize(scene) / 1e6:.0f} MB; {tasks} one-frame tasks each way, 2.x and "
            f"Flamenco 3; {single_runs} single tasks each way")
    modes = {}
    for protocol in ("v2", "v3"):
        for warm in (False, True):
            name = f"{protocol}-{'warm' if warm else 'fresh'}"
            modes[name] = _mode(wd, protocol, blender, scene, tasks, warm)
            ctx.log(f"warm: {name} {modes[name]['per_task_s']:.2f} s a task")
    single = single_task(wd, blender, scene, single_runs, ctx)
    wd.cleanup()
    return {
        "params": {"tasks": tasks, "single_task_runs": single_runs,
                   "scene": f"48x27 Cycles 4 samples + hidden ico sphere level {levels} + "
                            f"packed {image}x{image} image", "worker_settings": SETTINGS,
                   "v3_command": "blender-render, Flamenco 3.9 stock Simple Blender Render line"},
        "metrics": [_ratio(modes, "v2", ""), _ratio(modes, "v3", "Flamenco 3 stock job lines: "),
                    _memory_metric(modes["v2-warm"], modes["v2-fresh"], ""),
                    _memory_metric(modes["v3-warm"], modes["v3-fresh"], "Flamenco 3: "),
                    _single_metric(single)],
        "runs": {**modes, "single": single},
    }


def _ratio(modes: dict, protocol: str, label: str) -> dict:
    warm, fresh = modes[f"{protocol}-warm"], modes[f"{protocol}-fresh"]
    ratio = warm["per_task_s"] / fresh["per_task_s"]
    return {
        "metric": label + "time per one-frame task, warm / fresh", "value": ratio, "unit": "x",
        "baseline": fresh["per_task_s"], "baseline_what": "fresh Blender per task, s",
        "target": "<= 0.5", "met": ratio <= 0.5,
        "detail": f"{warm['per_task_s']:.2f} s vs {fresh['per_task_s']:.2f} s a task, "
                  f"{3600 / warm['per_task_s']:.0f} vs {3600 / fresh['per_task_s']:.0f} frames/hour",
    }


def _memory_metric(warm: dict, fresh: dict, label: str) -> dict:
    mb = common.mb
    return {
        "metric": label + "peak RSS, worker + Blender, warm", "value": mb(warm["peak_tree_rss"]), "unit": "MB",
        "baseline": mb(fresh["peak_tree_rss"]), "baseline_what": "fresh, MB",
        "detail": f"after the first task {mb(warm['loaded_rss'])} MB, peak of the first half after it "
                  f"{mb(warm['after_load_peak'])} MB, of the last quarter {mb(warm['last_quarter_peak'])} MB, "
                  f"after the last task {mb(warm['end_rss'])} MB; worker alone {mb(warm['worker_peak_rss'])} MB",
        "target": f"flat (last quarter <= {FLAT} x first half after the first task)",
        "met": warm["last_quarter_peak"] <= FLAT * warm["after_load_peak"],
    }


def _single_metric(single: dict) -> dict:
    ratio = common.median(single["ratios"])
    return {
        "metric": "a single task (nothing to reuse), warm_blender on / off", "value": ratio, "unit": "x",
        "baseline": common.median(single["fresh_s"]), "baseline_what": "one-task job, warm_blender off, s",
        "target": "<= 1.05", "met": ratio <= 1.05,
        "detail": f"{common.median(single['warm_s']):.2f} s vs {common.median(single['fresh_s']):.2f} s "
                  f"(median of {len(single['ratios'])} alternated pairs; ratios "
                  f"{', '.join(f'{r:.3f}' for r in single['ratios'])})",
    }
