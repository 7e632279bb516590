"""The warm Blender belongs to the worker: the real worker process, Debian's Blender and the
development Manager over HTTP.  It stays after a task, and it is stopped when the worker
goes asleep (a status request of the Manager) and when it shuts down (SIGTERM)."""
import os
import signal

import pytest

from tests.support.client import worker_id
from tests.support.jobs import submit
from tests.support.media import run, tool
from tests.support.procs import kill_marked, marked, new_marker
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow  # a real worker process rendering with a real Blender

HERE = os.path.dirname(os.path.abspath(__file__))
WARM = {"warm_blender": "true", "warm_blender_idle_timeout": "600", "task_types": "blender"}


@pytest.fixture
def blend(tmp_path):
    """The tiny warm scene, its file named by a marker unique to this run: the warm
    Blender's command line holds the path, so its processes (and only this run's) are
    found by it."""
    marker = new_marker("warm-worker")
    run([tool("blender"), "--background", "--factory-startup", "-noaudio", "--python",
         os.path.join(HERE, "support", "warm_scene_script.py"), "--", str(tmp_path)], timeout=120)
    path = tmp_path / f"{marker}.blend"
    os.rename(tmp_path / "scene a.blend", path)
    yield str(path), marker
    kill_marked(marker)


def render_once(manager, worker_process, blend, tmp_path):
    """A worker with the warm Blender on renders one frame; (worker, its id, Blender pid)."""
    path, marker = blend
    _, task_id = submit(manager, {"name": "blender_render", "settings": {
        "blender_cmd": tool("blender"), "filepath": path, "render_output": str(tmp_path / "out" / "f_####"),
        "format": "PNG", "frames": "1"}}, task_type="blender")
    worker = worker_process(manager.url, WARM)
    wid = worker_id(manager)
    wait_until(lambda: manager.task(task_id)["status"] in ("completed", "failed"), timeout=120,
               what="the render task done")
    assert manager.task(task_id)["status"] == "completed", manager.task_log(task_id)
    assert (tmp_path / "out" / "f_0001.png").is_file()
    # The task is over; its Blender is not: kept loaded for the next task of the file.
    kept = marked(marker)
    assert len(kept) == 1, kept
    assert kept[0].ppid() == worker.proc.pid
    assert f"started warm Blender pid {kept[0].pid}" in worker.output
    return worker, wid, kept[0]


def test_going_asleep_stops_the_warm_blender(manager, worker_process, blend, tmp_path):
    worker, wid, warm = render_once(manager, worker_process, blend, tmp_path)
    manager.request_status(wid, "asleep")
    wait_until(lambda: (wid, "asleep") in manager.acks, timeout=30, what="the worker asleep")
    wait_until(lambda: not marked(blend[1]), timeout=30, what="the warm Blender stopped")
    assert f"stopping warm Blender pid {warm.pid}: the worker is asleep" in worker.output
    assert worker.proc.poll() is None, "asleep, the worker itself keeps running"
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0


def test_shutting_down_stops_the_warm_blender(manager, worker_process, blend, tmp_path):
    worker, _, warm = render_once(manager, worker_process, blend, tmp_path)
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0
    assert not marked(blend[1])
    # Stopped by the worker on its way out, not only by dying with it (PR_SET_PDEATHSIG).
    assert f"stopping warm Blender pid {warm.pid}: " in worker.output
