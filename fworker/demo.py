"""``flamenco-worker --demo [v2|v3|both]``: the whole loop on one machine.

Starts a development Manager on 127.0.0.1 (a free port): the Flamenco 2.x one
(``v2``, the default) or the Flamenco 3 one (``v3``), queues a demo job (echo,
sleep, exec; a tiny Blender render and an FFmpeg video when those programs are
installed) in that Manager's job format, runs the worker on it with a live
progress display, prints where the results are, and exits 0 when the job
completed.  ``both`` runs the two demos one after the other.
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


def demo_job3(workdir: str) -> dict[str, typing.Any]:
    """The same demo as a Flamenco 3 job (fworker/devmanager/v3/jobs.py): Flamenco
    3's command and parameter names and task types; Blender makes its scene with
    ``exec`` (Flamenco 3 has no command that writes a file)."""
    from fworker.devmanager.v3 import jobs

    python = sys.executable
    tasks = [jobs.task("hello", [
        jobs.echo("Hello from the fworker demo (Flamenco 3)"),
        jobs.sleep(1),
        jobs.exec_command(python, ["-c", "import platform; print('running on', platform.node())"]),
    ], task_type="misc")]
    blender, ffmpeg = shutil.which("blender"), shutil.which("ffmpeg")
    scene = os.path.join(workdir, "scene.blend")
    frames = os.path.join(workdir, "render")
    if blender:
        # Written by the demo, not the job: the job only runs programs.
        script = os.path.join(workdir, "make_scene.py")
        with open(script, "w", encoding="utf-8") as file:
            file.write(f"SCENE_PATH = {scene!r}\n" + SCENE_SCRIPT)
        tasks.append(jobs.task("scene", [jobs.exec_command(blender, [
            "--background", "--factory-startup", "--python-exit-code", "42", "--python", script])],
            task_type="blender", parents=["hello"]))
        tasks.append(jobs.task("render", [jobs.blender_render(
            scene, exe_args="-b -y", total_step_count=5,
            args=["--render-output", os.path.join(frames, "frame-####"), "--render-format", "PNG",
                  "--render-frame", "1..5"])], task_type="blender", parents=["scene"]))
    if blender and ffmpeg:
        tasks.append(jobs.task("video", [jobs.frames_to_video(
            os.path.join(frames, "frame-*.png"), os.path.join(frames, "demo.mp4"), 5,
            args=["-c:v", "h264", "-pix_fmt", "yuv420p", "-y"])], task_type="ffmpeg", parents=["render"]))
    return jobs.job("fworker demo", tasks, job_type="simple-blender-render")


_FAST = {"fetch_task_interval": 0.2, "may_i_run_interval": 1.0, "push_log_max_interval": 0.2,
         "push_act_max_interval": 0.2, "activity_interval": 0.5}


def run(args: argparse.Namespace) -> int:
    """``--demo``: the 2.x demo, the Flamenco 3 one, or both (the worse exit code)."""
    if not args.verbose and not args.debug:
        logging.getLogger("fworker").setLevel(logging.WARNING)
    protocols = ["v2", "v3"] if args.demo == "both" else [args.demo or "v2"]
    return max(run_one(protocol) for protocol in protocols)


def run_one(protocol: str, workdir: str | None = None) -> int:
    """One demo against the development Manager of ``protocol`` (v2 or v3);
    0 when its job completed."""
    from fworker.wiring import build_worker

    workdir = workdir or tempfile.mkdtemp(prefix=f"fworker-demo-{protocol}-")
    manager = _start_manager(protocol, workdir)
    job = demo_job3(workdir) if protocol == "v3" else demo_job(workdir)
    job_id = manager.submit_job(job)["job_id"]
    generation = "Flamenco 3" if protocol == "v3" else "Flamenco 2.x"
    print(f"fworker demo: {generation} development Manager at {manager.url} (open it in a browser), "
          f"work folder {workdir}")
    task_types = ("misc blender ffmpeg" if protocol == "v3"
                  else "debug blender-render video-encoding")
    settings = config.load(files=[], overrides={
        "manager_url": manager.url, "manager_protocol": protocol,
        "task_update_queue_db": os.path.join(workdir, "queue.sqlite"),
        "nickname": "demo-worker", "task_types": task_types, **_FAST,
    })
    worker = build_worker(settings, credentials_path=os.path.join(workdir, "credentials.cfg"))
    worker.install_signal_handlers()
    display = gevent.spawn(_show_progress, manager, job_id, worker)
    try:
        exit_code = worker.run()
        job = manager.job(job_id)
        invalid = manager.invalid_requests() if protocol == "v3" else []
    finally:
        display.kill()
        manager.stop()
    _print_results(workdir, job, protocol)
    if protocol == "v3":
        # The Flamenco 3 development Manager checks every request against the
        # official schemas; the demo shows that it found nothing wrong.
        print(f"  requests the Manager found invalid against the Flamenco 3 schemas: {len(invalid)}")
        for row in invalid:
            print(f"    {row['method']} {row['path']}: {row['error']}")
    return exit_code if job["status"] == "completed" and not invalid else 1


def _start_manager(protocol: str, workdir: str) -> typing.Any:
    database = os.path.join(workdir, "manager.sqlite")
    if protocol == "v3":
        from fworker.devmanager.v3 import DevManager3

        return DevManager3(database, host="127.0.0.1", port=0).start()
    from fworker.devmanager import DevManager

    manager = DevManager(database, host="127.0.0.1", port=0)
    manager.start()
    return manager


def _show_progress(manager: typing.Any, job_id: str, worker: typing.Any) -> None:
    """One line per change of a task's activity; ends the demo with the job."""
    seen: dict[str, tuple[typing.Any, ...]] = {}
    started = time.monotonic()
    while True:
        for task in manager.tasks(job_id):
            task_id = task.get("_id") or task["id"]
            state = (task["status"], task.get("activity", ""), _steps(task))
            if seen.get(task_id) != state:
                seen[task_id] = state
                print(f"  {time.monotonic() - started:6.1f}s  {task['name']:<8} {state[0]:<10} "
                      f"{state[2]}{state[1]}")
        if manager.job(job_id)["status"] in ("completed", "failed", "canceled"):
            worker.request_shutdown("the demo job is finished")
            return
        gevent.sleep(0.1)


def _steps(task: dict[str, typing.Any]) -> str:
    """Flamenco 3 counts steps per task: "3/5 " once any is done, else ""."""
    done, total = task.get("steps_completed"), task.get("steps_total")
    return f"{done}/{total} " if done and total else ""


def _print_results(workdir: str, job: dict[str, typing.Any], protocol: str) -> None:
    print(f"fworker demo ({protocol}): job {job['status']}.")
    render = os.path.join(workdir, "render")
    if os.path.isdir(render):
        names = sorted(os.listdir(render))
        print(f"  results in {render}: {', '.join(names)}")
    else:
        print("  (Blender or FFmpeg not installed: the demo ran the simple commands only)")
    print(f"  task logs: in the Manager's database {os.path.join(workdir, 'manager.sqlite')}")
