"""7. Warm Blender: one-frame render tasks of one slow-loading file, with the scene kept
loaded (``warm_blender = true``) against a fresh Blender per task, in the same run.

The scene (tests/support/warm_scene_script.py): the tiny animated Cycles scene (48x27,
4 samples) plus a hidden ico sphere of subdivision level 9 (~2.6 M faces, never
rendered) and a packed 4096x4096 image: ~130 MB on disk, a few seconds to load, a
fraction of a second to render.  Each mode: one worker, one job of N one-frame tasks
(frames cycling 1..3), time from the job's submission to its last task completed,
divided by N; peak RSS of the worker plus all its descendants (Blender included),
sampled every 50 ms.  Fresh runs first, then warm (the warm Blender's load is in the
warm figure: its first task loads the file).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time

from bench import common

NAME = "warm"
TITLE = "Warm Blender"
SCRIPT = os.path.join(common.ROOT, "tests", "support", "warm_scene_script.py")
SETTINGS = {"task_types": "blender", "fetch_task_interval": 0.1}


def make_scene(folder: str, levels: int, image: int) -> str:
    subprocess.run(["blender", "--background", "--factory-startup", "-noaudio", "--python", SCRIPT, "--",
                    folder, str(levels), str(image)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True, timeout=600)
    return os.path.join(folder, "scene a.blend")


def _job(blender: str, scene: str, out_dir: str, tasks: int) -> dict:
    return {"name": "warm", "job_type": "blender", "tasks": [{
        "name": f"frame {i}", "task_type": "blender", "commands": [{"name": "blender_render", "settings": {
            "blender_cmd": blender, "filepath": scene, "render_output": os.path.join(out_dir, f"t{i:03d}_####"),
            "format": "PNG", "frames": str(1 + i % 3)}}]} for i in range(tasks)]}


def _mode(wd: common.Workdir, name: str, blender: str, scene: str, tasks: int, warm: bool) -> dict:
    settings = dict(SETTINGS, warm_blender="true" if warm else "false", warm_blender_max_tasks=1000)
    out_dir = wd.sub(f"out-{name}")
    with common.manager_and_worker(wd.sub(f"manager-{name}"), wd.sub(f"worker-{name}"), settings) as (manager, worker):
        with common.Sampler(worker.ps, tree=True) as sampler:
            t0 = time.monotonic()
            job = manager.submit(_job(blender, scene, out_dir, tasks))
            common.wait_until(lambda: manager.done(job["job_id"], tasks), 3600, f"the {name} job", interval=0.05)
            wall = time.monotonic() - t0
        worker_peak = common.peak_rss(worker.pid)
    saved = len(os.listdir(out_dir))
    assert saved == tasks, f"{name}: {saved} frames saved for {tasks} tasks"
    # Memory over the run: the peak of the first half and of the last quarter (flat:
    # no higher at the end than it was in the first half, load included).
    samples = [rss for _, rss in sampler.series]
    quarter = max(1, len(samples) // 4)
    return {"wall_s": wall, "per_task_s": wall / tasks, "peak_tree_rss": sampler.peak,
            "worker_peak_rss": worker_peak,
            "first_half_peak": max(samples[:2 * quarter], default=0),
            "last_quarter_peak": max(samples[-quarter:], default=0)}


def run(ctx) -> dict:
    blender = shutil.which("blender")
    if not blender:
        raise RuntimeError("blender is not installed (apt-get install blender)")
    tasks = 20 if ctx.quick else 100
    levels, image = 9, 4096
    wd = common.Workdir("warm")
    scene = make_scene(wd.path, levels, image)
    ctx.log(f"warm: scene {os.path.getsize(scene) / 1e6:.0f} MB; {tasks} one-frame tasks each way")
    fresh = _mode(wd, "fresh", blender, scene, tasks, warm=False)
    ctx.log(f"warm: fresh {fresh['per_task_s']:.2f} s a task")
    warm = _mode(wd, "warm", blender, scene, tasks, warm=True)
    ctx.log(f"warm: warm {warm['per_task_s']:.2f} s a task")
    wd.cleanup()
    ratio = warm["per_task_s"] / fresh["per_task_s"]
    return {
        "params": {"tasks": tasks, "scene": f"48x27 Cycles 4 samples + hidden ico sphere level {levels} + "
                                             f"packed {image}x{image} image", "worker_settings": SETTINGS},
        "metrics": [{
            "metric": "time per one-frame task, warm / fresh", "value": ratio, "unit": "x",
            "baseline": fresh["per_task_s"], "baseline_what": "fresh Blender per task, s",
            "target": "<= 0.5", "met": ratio <= 0.5,
            "detail": f"{warm['per_task_s']:.2f} s vs {fresh['per_task_s']:.2f} s a task, "
                      f"{3600 / warm['per_task_s']:.0f} vs {3600 / fresh['per_task_s']:.0f} frames/hour",
        }, {
            "metric": "peak RSS, worker + Blender, warm", "value": common.mb(warm["peak_tree_rss"]), "unit": "MB",
            "baseline": common.mb(fresh["peak_tree_rss"]), "baseline_what": "fresh, MB",
            "detail": f"first half of the run {common.mb(warm['first_half_peak'])} MB, last quarter "
                      f"{common.mb(warm['last_quarter_peak'])} MB; worker alone "
                      f"{common.mb(warm['worker_peak_rss'])} MB",
            "target": "flat (last quarter <= 1.1 x first half)",
            "met": warm["last_quarter_peak"] <= 1.1 * warm["first_half_peak"],
        }],
        "runs": {"fresh": fresh, "warm": warm},
    }
