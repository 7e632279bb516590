"""``flamenco-worker --demo``: the whole loop on one machine.

Starts the development Manager on 127.0.0.1 (a free port), queues a demo job
(echo, sleep, exec; a tiny Blender render and an FFmpeg video when those
programs are installed), runs the worker on it with a live progress display,
prints where the results are, and exits 0 when the job completed.
"""
from __future__ import annotations

import argparse
import logging
import os
import shlex
import shutil
import sys
import tempfile
import time
import typing

import gevent

from fworker import config

log = logging.getLogger(__name__)

# Written by the job's create_python_file command and run by Blender: a tiny
# scene that renders in about a second per frame on a laptop CPU.
SCENE_SCRIPT = """\
import bpy
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.samples = 4
scene.cycles.use_denoising = False  # Debian's Blender has no OpenImageDenoise
scene.render.resolution_x = 64
scene.render.resolution_y = 36
scene.render.resolution_percentage = 100
scene.frame_start = 1
scene.frame_end = 5
cube = bpy.data.objects.get("Cube")
if cube is not None:
    cube.rotation_mode = "XYZ"
    cube.keyframe_insert("rotation_euler", frame=1)
    cube.rotation_euler[2] = 1.5
    cube.keyframe_insert("rotation_euler", frame=5)
bpy.ops.wm.save_as_mainfile(filepath=SCENE_PATH)
"""


def demo_job(workdir: str) -> dict[str, typing.Any]:
    """The demo job: always the simple commands, plus Blender and FFmpeg
    tasks when those programs are on PATH."""
    python = shlex.quote(sys.executable)
    tasks: list[dict[str, typing.Any]] = [{
        "name": "hello", "task_type": "debug",
        "commands": [
            {"name": "echo", "settings": {"message": "Hello from the fworker demo"}},
            {"name": "sleep", "settings": {"time_in_seconds": 1}},
            {"name": "exec",
             "settings": {"cmd": f"{python} -c \"import platform; print('running on', platform.node())\""}},
        ],
    }]
    blender, ffmpeg = shutil.which("blender"), shutil.which("ffmpeg")
    scene = os.path.join(workdir, "scene.blend")
    frames = os.path.join(workdir, "render", "frame-")
    if blender:
        script = os.path.join(workdir, "make_scene.py")
        tasks.append({
            "name": "render", "task_type": "blender-render", "parents": ["hello"],
            "commands": [
                {"name": "create_python_file", "settings": {
                    "filepath": script, "contents": f"SCENE_PATH = {scene!r}\n" + SCENE_SCRIPT}},
                {"name": "exec", "settings": {
                    "cmd": shlex.join([blender, "--background", "--factory-startup", "--python-exit-code", "42",
                                       "--python", script])}},
                {"name": "blender_render", "settings": {
                    "blender_cmd": shlex.quote(blender), "filepath": scene, "render_output": frames + "####",
                    "format": "PNG", "frames": "1..5"}},
            ],
        })
    if blender and ffmpeg:
        tasks.append({
            "name": "video", "task_type": "video-encoding", "parents": ["render"],
            "commands": [{"name": "create_video", "settings": {
                "ffmpeg_cmd": shlex.quote(ffmpeg), "input_files": frames + "*.png",
                "output_file": os.path.join(workdir, "render", "demo.mp4"), "fps": 5}}],
        })
    return {"name": "fworker demo", "job_type": "demo", "priority": 50, "tasks": tasks}


def run(args: argparse.Namespace) -> int:
    from fworker.devmanager import DevManager
    from fworker.wiring import build_worker

    if not args.verbose and not args.debug:
        logging.getLogger("fworker").setLevel(logging.WARNING)
    workdir = tempfile.mkdtemp(prefix="fworker-demo-")
    manager = DevManager(os.path.join(workdir, "manager.sqlite"), host="127.0.0.1", port=0)
    manager.start()
    job_id = manager.submit_job(demo_job(workdir))["job_id"]
    print(f"fworker demo: development Manager at {manager.url} (open it in a browser), work folder {workdir}")
    settings = config.load(files=[], overrides={
        "manager_url": manager.url, "task_update_queue_db": os.path.join(workdir, "queue.sqlite"),
        "nickname": "demo-worker", "fetch_task_interval": 0.2, "may_i_run_interval": 1.0,
        "push_log_max_interval": 0.2, "push_act_max_interval": 0.2, "activity_interval": 0.5,
        "task_types": "debug blender-render video-encoding",
    })
    worker = build_worker(settings, credentials_path=os.path.join(workdir, "credentials.cfg"))
    worker.install_signal_handlers()
    display = gevent.spawn(_show_progress, manager, job_id, worker)
    try:
        exit_code = worker.run()
    finally:
        display.kill()
        manager.stop()
    job = manager.job(job_id)
    _print_results(workdir, job)
    return exit_code if job["status"] == "completed" else 1


def _show_progress(manager: typing.Any, job_id: str, worker: typing.Any) -> None:
    """One line per change of a task's activity; ends the demo with the job."""
    seen: dict[str, tuple[typing.Any, ...]] = {}
    started = time.monotonic()
    while True:
        for task in manager.tasks(job_id):
            state = (task["status"], task.get("activity", ""))
            if seen.get(task["_id"]) != state:
                seen[task["_id"]] = state
                print(f"  {time.monotonic() - started:6.1f}s  {task['name']:<8} {state[0]:<10} {state[1]}")
        if manager.job(job_id)["status"] in ("completed", "failed", "canceled"):
            worker.request_shutdown("the demo job is finished")
            return
        gevent.sleep(0.1)


def _print_results(workdir: str, job: dict[str, typing.Any]) -> None:
    print(f"fworker demo: job {job['status']}.")
    render = os.path.join(workdir, "render")
    if os.path.isdir(render):
        names = sorted(os.listdir(render))
        print(f"  results in {render}: {', '.join(names)}")
    else:
        print("  (Blender or FFmpeg not installed: the demo ran the simple commands only)")
    print(f"  task logs: in the Manager's database {os.path.join(workdir, 'manager.sqlite')}")
