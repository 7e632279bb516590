"""1. Render overhead: a short real Blender render through the worker vs. the
same `blender -b` command run bare.

The scene: 40 frames of Blender's default cube, Cycles, 16 samples, 320x180 (about 6-7 s bare on 2 cores),
denoising off (Debian's Blender has no OpenImageDenoise), PNG.  The worker
gets it as one task with one `blender_render` command; its time is from the
task queued on the Manager to `completed` received by the Manager.  The bare
time is the wall time of the identical command line (the one blender_render
builds) with its output to /dev/null.  Runs alternate bare / worker, after
one unmeasured warm-up render.

Then the same against the Flamenco 3 development Manager: one task with one
`blender-render` command (Flamenco 3's stock `-b -y` before the blend file),
its own bare baseline being that command line.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

from bench import common

NAME = "render"
TITLE = "Render overhead"

FRAMES = 40
SETTINGS = {"task_types": "blender", "fetch_task_interval": 0.1}  # quick pick-up; log/activity: defaults
SCENE = """
import bpy, sys
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.samples = 16
scene.cycles.use_denoising = False
scene.render.resolution_x = 320
scene.render.resolution_y = 180
scene.render.resolution_percentage = 100
scene.frame_start = 1
scene.frame_end = {frames}
cube = bpy.data.objects.get("Cube")
cube.rotation_mode = "XYZ"
cube.keyframe_insert("rotation_euler", frame=1)
cube.rotation_euler[2] = 3.0
cube.keyframe_insert("rotation_euler", frame={frames})
bpy.ops.wm.save_as_mainfile(filepath={path!r})
"""


def make_scene(folder: str) -> str:
    path = os.path.join(folder, "scene.blend")
    subprocess.run(["blender", "--background", "--factory-startup", "--python-exit-code", "3",
                    "--python-expr", SCENE.format(frames=FRAMES, path=path)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=120)
    return path


def command_line(blender: str, scene: str, output: str) -> list[str]:
    """What the blender_render command runs for these settings."""
    return [blender, "--enable-autoexec", "-noaudio", "--background", scene, "--render-output", output,
            "--render-format", "PNG", "--render-frame", f"1..{FRAMES}"]


def command_line_v3(blender: str, scene: str, output: str) -> list[str]:
    """What blender-render runs for the Flamenco 3 task of ``_worker``."""
    return [blender, "-b", "-y", scene, "--render-output", output, "--render-format", "PNG",
            "--render-frame", f"1..{FRAMES}"]


def _bare(blender: str, scene: str, out_dir: str, protocol: str = "v2") -> float:
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    line = command_line_v3 if protocol == "v3" else command_line
    t0 = time.monotonic()
    subprocess.run(line(blender, scene, os.path.join(out_dir, "frame-####")),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=600)
    seconds = time.monotonic() - t0
    assert len(os.listdir(out_dir)) == FRAMES, "the bare render did not save every frame"
    return seconds


def _worker(manager: common.Manager, worker: common.WorkerProc, blender: str, scene: str, out_dir: str) -> dict:
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    cpu0 = sum(worker.ps.cpu_times()[:2])  # the worker's own CPU, not Blender's
    output = os.path.join(out_dir, "frame-####")
    if manager.protocol == "v3":
        command = common.v3_command("blender-render", FRAMES, exe=blender, exeArgs="-b -y", argsBefore=[],
                                    blendfile=scene, args=command_line_v3(blender, scene, output)[4:])
        job = manager.submit(common.v3_job("render", [("render", "blender", [command])]))
    else:
        job = manager.submit({"name": "render", "job_type": "blender", "tasks": [{
            "name": "render", "task_type": "blender", "commands": [{"name": "blender_render", "settings": {
                "blender_cmd": blender, "filepath": scene, "render_output": output,
                "format": "PNG", "frames": f"1..{FRAMES}"}}]}]})
    task_id = job["task_ids"][0]
    common.wait_until(lambda: manager.done(job["job_id"], 1), 600, "the render task", interval=0.02)
    assert len(os.listdir(out_dir)) == FRAMES, "the worker's render did not save every frame"
    return {"task_id": task_id, "job_id": job["job_id"], "worker_cpu_s": sum(worker.ps.cpu_times()[:2]) - cpu0}


def _runs(ctx, protocol: str, blender: str, runs: int) -> list[dict]:
    """``runs`` pairs of bare and worker renders against the ``protocol`` Manager."""
    wd = common.Workdir(f"render-{protocol}")
    profile = ctx.profile_path("render-0") if ctx.profile and protocol == "v2" else None
    bare_times, tasks = [], []
    scene = make_scene(wd.path)
    with common.manager_and_worker(wd.sub("manager"), wd.sub("worker"), SETTINGS, events=True,
                                   worker_profile=profile, protocol=protocol) as (manager, worker):
        ctx.log(f"render ({protocol}): warm-up (not measured)")
        _bare(blender, scene, wd.sub("out-warmup"), protocol)
        for r in range(runs):
            bare_times.append(_bare(blender, scene, os.path.join(wd.path, "out-bare"), protocol))
            tasks.append(_worker(manager, worker, blender, scene, os.path.join(wd.path, "out-worker")))
            ctx.log(f"render ({protocol}): run {r + 1}/{runs}: bare {bare_times[-1]:.2f} s")
        # A Flamenco 3 Manager keeps no metrics: no Blender phase timings there.
        metrics_rows = dict(manager.query("SELECT id, metrics FROM tasks")) if protocol == "v2" else {}
    trace, events = manager.trace(), worker.events()
    wd.cleanup()
    submits = {row[2]: row[1] for row in common.trace_rows(trace, "submit")}
    gives = {row[2]: row[1] for row in common.trace_rows(trace, "give")}
    completed = {row[2]: row[1] for row in common.trace_rows(trace, "update") if row[4] == "completed"}
    started = {row[2]: row[0] for row in events if row[1] == "command_started"}
    finished = {row[2]: row[0] for row in events if row[1] == "command_finished"}
    worker_runs = []
    for task, bare in zip(tasks, bare_times, strict=True):
        t = task["task_id"]
        timing = (json.loads(metrics_rows.get(t) or "{}") or {}).get("timing", {})
        total = completed[t] - submits[task["job_id"]]
        worker_runs.append({
            "queued_to_completed_s": total, "bare_s": bare, "ratio": total / bare,
            "queued_to_dispatched_s": gives[t] - submits[task["job_id"]],
            "dispatched_to_command_started_s": started[t] - gives[t],
            "command_s": finished[t] - started[t],
            "command_finished_to_completed_received_s": completed[t] - finished[t],
            "blender_phases_s": timing,
            "worker_cpu_s": task["worker_cpu_s"],
            # Robust to other load on the machine: the time the worker adds around the
            # command, plus the CPU it took from Blender's 2 cores while it ran.
            "overhead_estimate": (total - (finished[t] - started[t]) + task["worker_cpu_s"]) / bare,
        })
        ctx.log(f"  worker {total:.2f} s vs bare {bare:.2f} s: {total / bare:.3f}")
    return worker_runs


def run(ctx) -> dict:
    blender = shutil.which("blender")
    if not blender:
        raise RuntimeError("blender is not installed (apt-get install blender)")
    runs = ctx.runs(2, 5)
    worker_runs = _runs(ctx, "v2", blender, runs)
    v3_runs = _runs(ctx, "v3", blender, runs)
    return {
        "params": {"frames": FRAMES, "engine": "CYCLES", "samples": 16, "resolution": "320x180", "runs": runs,
                   "worker_settings": SETTINGS},
        "metrics": _metrics(worker_runs, "") + _metrics(v3_runs, "Flamenco 3: "),
        "runs": worker_runs, "runs_v3": v3_runs,
    }


def _metrics(worker_runs: list[dict], label: str) -> list[dict]:
    bare_times = [w["bare_s"] for w in worker_runs]
    ratio = common.median([w["ratio"] for w in worker_runs])
    estimate = 1 + common.median([w["overhead_estimate"] for w in worker_runs])
    outside = common.median([w["queued_to_completed_s"] - w["command_s"] for w in worker_runs])
    cpu = common.median([w["worker_cpu_s"] for w in worker_runs])
    return [{
        "metric": label + "render through the worker / bare blender", "value": ratio, "unit": "x",
        "baseline": common.median(bare_times), "baseline_what": "bare blender -b, s",
        "target": "<= 1.03", "met": ratio <= 1.03,
        "detail": f"{common.median([w['queued_to_completed_s'] for w in worker_runs]):.2f} s vs "
                  f"{common.median(bare_times):.2f} s",
    }, {
        "metric": label + "same, load-robust estimate: 1 + (time outside the command + worker CPU) / bare",
        "value": estimate, "unit": "x", "target": "<= 1.03", "met": estimate <= 1.03,
        "detail": f"{1000 * outside:.0f} ms outside the command, worker CPU {1000 * cpu:.0f} ms per render",
    }]
