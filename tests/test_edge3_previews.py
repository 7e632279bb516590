"""Previews on Flamenco 3: a real Blender render's ``Saved:`` image reaches the v3
development Manager as an image upload (``task/{id}/output-produced``), and the
conversion that makes it is the worker's own process, not the task's."""
import shlex

import gevent
import pytest

import fworker  # noqa: F401  (monkey-patches first)
from fworker import containment
from fworker.devmanager.v3 import jobs
from fworker.process import ChildProcess
from fworker.proctree import enable_subreaper
from fworker.runner import Outcome
from tests.support.procs import PY, kill_marked, new_marker
from tests.support.waiting import wait_until
from tests.support.workers import build_worker

STOCK_PY_EXPR = ("import bpy; r = bpy.context.scene.render; r.use_file_extension = True; "
                 "r.use_overwrite = False; r.use_placeholder = False")


@pytest.mark.slow
def test_a_blender_render_on_v3_uploads_its_image_as_a_jpeg_preview(make_manager3, blender_media, tmp_path):
    manager = make_manager3()
    out = tmp_path / "frames"
    render = jobs.blender_render(blender_media.blend, ["--scene", "Scene", "--python-expr", STOCK_PY_EXPR,
                                                       "--render-output", str(out / "######"),
                                                       "--render-format", "PNG", "--render-frame", "1"],
                                 exe_args="-b -y")
    done = manager.submit_job(jobs.job("preview", [jobs.task("render", [render], "blender")]))
    worker = build_worker(tmp_path, manager.url, output_produced_interval="0.1")
    try:
        worker.start()
        worker.run_once()
        assert worker.last_outcome is Outcome.COMPLETED
        previews = wait_until(lambda: manager.previews_received(done["job_id"]), what="a preview received")
    finally:
        worker.request_shutdown("end of test")
        worker.shutdown()
    assert previews[0]["task"] == done["task_ids"][0]
    assert previews[0]["mime"] == "image/jpeg" and previews[0]["image_ok"], previews
    assert [r["operation"] for r in manager.requests].count("taskOutputProduced") == len(previews)
    assert manager.invalid_requests() == []


def test_a_helper_process_started_during_a_task_is_not_the_tasks():
    """A preview conversion (task_child=False) may outlive the task's end: it has
    its own time limit; the task's stop must not cut it off half-way."""
    assert enable_subreaper()
    mark = new_marker("helper")
    scope = containment.TaskScope("t", use_cgroup=True, grace=0.5).open()
    helper = ChildProcess([PY, "-c", "import time; time.sleep(300)", mark], on_lines=lambda lines: None,
                          grace=0.5, task_child=False)
    task_child = ChildProcess(shlex.split(f"{PY} -c 'import time; time.sleep(300)' {mark}-task"),
                              on_lines=lambda lines: None, grace=0.5)
    running = [gevent.spawn(helper.run), gevent.spawn(task_child.run)]
    try:
        wait_until(lambda: helper.pid and task_child.pid, what="both started")
        members = {proc.pid for proc in scope.members()}
        assert task_child.pid in members and helper.pid not in members
        scope.close()
        running[1].join(timeout=20)
        assert running[1].ready(), "the task's child was stopped with the task"
        assert not running[0].ready(), "the helper was left running"
    finally:
        helper.abort()
        scope.close()
        gevent.killall(running, timeout=10)
        kill_marked(mark)


def test_a_busy_managers_429_drops_the_image_and_nothing_is_resent(make_manager3, tmp_path):
    manager = make_manager3(preview_delay=600.0)  # an accepted image holds its place in the queue
    manager.previews.size = 1
    done = manager.submit_job(jobs.job("job", [jobs.task("t0", [jobs.echo("x")], "misc")]))
    task_id = done["task_ids"][0]
    image = tmp_path / "frame.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 100 + b"\xff\xd9")  # JPEG: sent as it is
    worker = build_worker(tmp_path, manager.url, output_produced_interval="0.05")
    try:
        worker.start()
        worker.edge.output_produced(task_id, [str(image)])
        wait_until(manager.previews_received, what="the first image taken")
        worker.edge.output_produced(task_id, [str(image)])
        uploader = worker.edge._uploaders[task_id]
        wait_until(lambda: uploader.dropped == 1, what="the second image dropped on 429")
        assert uploader.sent == 1 and "busy" in uploader.last_outcome
    finally:
        worker.request_shutdown("end of test")
        worker.shutdown()
    answers = [r["status"] for r in manager.requests if r["operation"] == "taskOutputProduced"]
    assert answers == [202, 429], "a refused image is not sent again"
    assert manager.invalid_requests() == []
