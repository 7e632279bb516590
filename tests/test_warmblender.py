"""The warm Blender (fworker.warmblender, fworker.commands.blender_warm) against Debian's
Blender: frames rendered in a kept-loaded Blender are pixel-identical to a fresh
`blender -b`, whatever the task before changed; failures fall back or fail only the task."""
import logging
import os
import shutil
import signal
import subprocess

import gevent
import psutil
import pytest

from fworker import config, containment, leftovers, warmblender
from fworker.commands import base, blender_warm
from fworker.errors import CommandFailed
from fworker.proctree import OWNER_VAR
from tests.support.media import run, tool
from tests.support.reporter import RecordingReporter
from tests.support.waiting import wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
STOCK_EXPR = ("import bpy; render = bpy.context.scene.render; render.use_file_extension = False; "
              "render.use_overwrite = True; render.use_placeholder = False")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """'scene a.blend' and 'scene b.blend' (the cube moves the other way), made once."""
    folder = str(tmp_path_factory.mktemp("warm"))
    out = run([tool("blender"), "--background", "--factory-startup", "-noaudio", "--python",
               os.path.join(HERE, "support", "warm_scene_script.py"), "--", folder], timeout=120)
    assert b"WARM SCENE DONE" in out, out.decode(errors="replace")
    return folder


@pytest.fixture
def blend(scenes, tmp_path):
    path = tmp_path / "shot.blend"
    shutil.copy(os.path.join(scenes, "scene a.blend"), path)
    return str(path)


@pytest.fixture
def settings(tmp_path):
    return config.defaults().replace(activity_interval=0.0, abort_grace_period=3.0, warm_blender=True,
                                     task_update_queue_db=str(tmp_path / "queue.db"))


@pytest.fixture(autouse=True)
def no_warm_blender_left():
    yield
    warmblender.stop_all("end of test")


def render(blend, out, frames, settings, **extra):
    """One blender_render command; its RecordingReporter."""
    import fworker.commands  # noqa: F401  (registers the commands)

    rec = RecordingReporter()
    cmd = base.lookup("blender_render")(base.CommandContext(rec, logging.getLogger("test.warm"), settings))
    cmd.execute(cmd.validate({"blender_cmd": "blender", "filepath": blend, "render_output": out,
                              "frames": frames, "format": "PNG", **extra}))
    return rec


def pixels(path):
    return run([tool("ffmpeg"), "-v", "error", "-nostdin", "-i", path, "-f", "rawvideo", "-pix_fmt", "rgba", "-"])


def fresh(blend, out, frames, *extra):
    run([tool("blender"), "--background", "-noaudio", blend, *extra, "--render-output", out,
         "--render-format", "PNG", "--render-frame", frames], timeout=120)


def assert_renders_as_fresh(blend, settings, tmp_path, frame):
    """The next warm task (output w3/) renders ``frame`` pixel for pixel as a fresh Blender."""
    render(blend, str(tmp_path / "w3" / "f_####"), str(frame), settings)
    fresh(blend, str(tmp_path / "fresh" / "f_####"), str(frame))
    name = f"f_{frame:04d}.png"
    assert pixels(str(tmp_path / "w3" / name)) == pixels(str(tmp_path / "fresh" / name))


def warm_pid():
    warm = warmblender.current()
    return warm.pid if warm is not None else None


@pytest.mark.slow
def test_frames_rendered_warm_are_identical_to_a_fresh_blender(blend, settings, tmp_path):
    fresh(blend, str(tmp_path / "fresh" / "f_####"), "1..3")
    first = render(blend, str(tmp_path / "w1" / "f_####"), "1", settings)
    pid = warm_pid()
    assert pid and any(line.startswith("Read blend:") for line in first.log)
    # A task that changes the frame range, the output path and the file-extension flag...
    second = render(blend, str(tmp_path / "w2" / "g_##"), "2..3", settings, python_expr=STOCK_EXPR)
    # ...and one after it, which must see the scene as loaded (extension back on).
    third = render(blend, str(tmp_path / "w3" / "f_####"), "3", settings)
    assert warm_pid() == pid
    for rec in (second, third):
        assert any("scene already loaded" in line for line in rec.log)
        assert not any(line.startswith("Read blend:") for line in rec.log)
        assert rec.of("progress")[-1] == 100
    assert second.of("output") == [[str(tmp_path / "w2" / "g_02")], [str(tmp_path / "w2" / "g_03")]]
    assert third.of("output") == [[str(tmp_path / "w3" / "f_0003.png")]]
    expected = {frame: pixels(str(tmp_path / "fresh" / f"f_000{frame}.png")) for frame in (1, 2, 3)}
    assert expected[1] != expected[3]  # the cube moves: a mix-up of frames would show
    assert pixels(str(tmp_path / "w1" / "f_0001.png")) == expected[1]
    assert pixels(str(tmp_path / "w2" / "g_02")) == expected[2]
    assert pixels(str(tmp_path / "w2" / "g_03")) == expected[3]
    assert pixels(str(tmp_path / "w3" / "f_0003.png")) == expected[3]
    # Its environment is any child's (fworker.childenv): nothing of the worker's own namespace.
    environ = psutil.Process(pid).environ()
    assert not [name for name in environ if name.startswith("FWORKER_") and name not in
                (OWNER_VAR, warmblender.TOKEN_ENV)], environ


@pytest.mark.slow
def test_a_changed_file_is_loaded_again(blend, scenes, settings, tmp_path):
    render(blend, str(tmp_path / "w1" / "f_####"), "1", settings)
    pid = warm_pid()
    shutil.copy(os.path.join(scenes, "scene b.blend"), blend)
    rec = render(blend, str(tmp_path / "w2" / "f_####"), "1", settings)
    assert any("the file changed" in line for line in rec.log), rec.log
    assert any(line.startswith("Read blend:") for line in rec.log)
    assert (warm_pid() not in (None, pid) and not psutil.pid_exists(pid)) or _zombie(pid)
    fresh(blend, str(tmp_path / "fresh" / "f_####"), "1")
    assert pixels(str(tmp_path / "w2" / "f_0001.png")) == pixels(str(tmp_path / "fresh" / "f_0001.png"))
    assert pixels(str(tmp_path / "w2" / "f_0001.png")) != pixels(str(tmp_path / "w1" / "f_0001.png"))


def _zombie(pid):
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow
def test_an_unknown_expression_gets_a_fresh_blender_and_leaves_the_warm_one(blend, settings, tmp_path):
    render(blend, str(tmp_path / "w1" / "f_####"), "1", settings)
    pid = warm_pid()
    rec = render(blend, str(tmp_path / "w2" / "f_####"), "2", settings, python_expr="print('HELLO')")
    assert any("a fresh Blender for this task: --python-expr runs a script" in line for line in rec.log)
    assert "HELLO" in rec.log
    assert (tmp_path / "w2" / "f_0002.png").is_file()
    assert warm_pid() == pid


@pytest.mark.slow
def test_what_the_warm_blender_cannot_do_exactly_goes_to_a_fresh_one(blend, settings, tmp_path):
    render(blend, str(tmp_path / "w1" / "f_####"), "1", settings)
    pid = warm_pid()
    # JPEG has no alpha: setting it from Python would change the file's colour mode too,
    # where -F changes only the format.
    rec = render(blend, str(tmp_path / "w2" / "f_####"), "2", settings, format="JPEG")
    assert any("the kept-loaded one cannot do it exactly" in line for line in rec.log), rec.log
    assert (tmp_path / "w2" / "f_0002.jpg").is_file()
    assert warm_pid() == pid
    # The declined request left nothing behind: the next task renders PNG as loaded.
    assert_renders_as_fresh(blend, settings, tmp_path, 2)


@pytest.mark.slow
def test_killed_between_tasks_the_next_task_starts_a_fresh_one(blend, settings, tmp_path):
    render(blend, str(tmp_path / "w1" / "f_####"), "1", settings)
    pid = warm_pid()
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: _zombie(pid) or warmblender.current() is None, what="the warm Blender dead")
    rec = render(blend, str(tmp_path / "w2" / "f_####"), "2", settings)
    assert (tmp_path / "w2" / "f_0002.png").is_file()
    assert any(line.startswith("Read blend:") for line in rec.log)
    assert warm_pid() not in (None, pid)


def _start_in_greenlet(blend, out, frames, settings):
    recorder = {}

    def task():
        import fworker.commands  # noqa: F401

        rec = recorder["rec"] = RecordingReporter()
        cmd = base.lookup("blender_render")(base.CommandContext(rec, logging.getLogger("test.warm"), settings))
        cmd.execute(cmd.validate({"blender_cmd": "blender", "filepath": blend, "render_output": out,
                                  "frames": frames, "format": "PNG"}))

    return gevent.spawn(task), recorder


@pytest.mark.slow
def test_killed_during_a_task_fails_only_that_task(blend, settings, tmp_path):
    render(blend, str(tmp_path / "w1" / "f_####"), "1", settings)
    pid = warm_pid()
    # Hundreds of frames: seconds of rendering, so the kill comes in the middle.
    greenlet, recorder = _start_in_greenlet(blend, str(tmp_path / "w2" / "f_####"), "1..500", settings)
    wait_until(lambda: any(line.startswith("Fra:") for line in recorder.get("rec", RecordingReporter()).log),
               timeout=60, what="the second task rendering")
    os.kill(pid, signal.SIGKILL)
    greenlet.join(timeout=60)
    assert isinstance(greenlet.exception, CommandFailed), greenlet.exception
    assert "exited" in str(greenlet.exception) and "signal 9" in str(greenlet.exception)
    render(blend, str(tmp_path / "w3" / "f_####"), "1", settings)
    assert (tmp_path / "w3" / "f_0001.png").is_file()
    assert warm_pid() not in (None, pid)


@pytest.mark.slow
def test_a_task_aborted_mid_render_is_followed_by_a_clean_one(blend, settings, tmp_path):
    render(blend, str(tmp_path / "w1" / "f_####"), "1", settings)
    pid = warm_pid()
    # Hundreds of frames: seconds of rendering, so the kill comes in the middle.
    greenlet, recorder = _start_in_greenlet(blend, str(tmp_path / "w2" / "f_####"), "1..500", settings)
    wait_until(lambda: any(line.startswith("Fra:") for line in recorder.get("rec", RecordingReporter()).log),
               timeout=60, what="the second task rendering")
    greenlet.kill(timeout=30)  # as the runner is killed by an abort
    assert _zombie(pid), "an aborted task must stop the warm Blender with it"
    assert warmblender.current() is None
    assert_renders_as_fresh(blend, settings, tmp_path, 2)


@pytest.mark.slow
def test_the_sweep_spares_the_warm_blender_and_nothing_else(blend, settings, tmp_path):
    render(blend, str(tmp_path / "w1" / "f_####"), "1", settings)
    pid = warm_pid()
    owner = leftovers.owner_mark(settings.task_update_queue_db)
    # A process of the same owner, as a task would leave: found and stopped.
    stray = subprocess.Popen(["sleep", "60"], env=dict(os.environ, **{OWNER_VAR: owner}))
    try:
        found = [proc.pid for proc in leftovers.find(owner)]
        assert stray.pid in found and pid not in found
        assert leftovers.stop_leftovers(owner) == []
        assert stray.wait(timeout=10) is not None
        assert psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    finally:
        stray.kill()
        stray.wait()
    warmblender.stop_all("test")
    assert not warmblender.resident_pids()


@pytest.mark.slow
def test_bounds_max_tasks_and_idle(blend, settings, tmp_path):
    render(blend, str(tmp_path / "w1" / "f_####"), "1", settings.replace(warm_blender_max_tasks=1))
    assert warmblender.current() is None  # restarted for the next task
    render(blend, str(tmp_path / "w1" / "f_####"), "1", settings.replace(warm_blender_max_memory_mb=1))
    assert warmblender.current() is None  # Blender alone needs more than 1 MB
    render(blend, str(tmp_path / "w2" / "f_####"), "1", settings.replace(warm_blender_idle_timeout=0.5))
    pid = warm_pid()
    assert pid
    wait_until(lambda: _zombie(pid), timeout=30, what="the idle warm Blender stopped")
    assert warmblender.current() is None


def test_command_lines_the_warm_blender_understands():
    plan = blender_warm.analyse(["blender", "--factory-startup", "--enable-autoexec", "-noaudio", "--background",
                                 "/x/a.blend", "--python-expr", STOCK_EXPR, "--render-output", "/o/f_##",
                                 "--render-format", "PNG", "-t", "4", "--render-frame", "1..3",
                                 "--", "--cycles-device", "CPU"])
    assert isinstance(plan, blender_warm.Plan)
    assert plan.ops == [("flags", {"use_file_extension": False, "use_overwrite": True, "use_placeholder": False}),
                        ("output", "/o/f_##"), ("format", "PNG"), ("frames", "1..3")]
    assert plan.key.filepath == "/x/a.blend"
    assert plan.key.argv == ("blender", "--factory-startup", "--enable-autoexec", "-noaudio", "--background",
                             "-t", "4", "--", "--cycles-device", "CPU")
    assert plan.launch[-5:] == ["--python", warmblender.CONTROL_SCRIPT, "--", "--cycles-device", "CPU"]
    v3 = blender_warm.analyse(["blender", "-b", "-y", "/x/a.blend", "--scene", "Scene", "--python-expr", STOCK_EXPR,
                               "--render-output", "/o/f_####", "--render-format", "PNG", "--render-frame", "4..5"])
    assert [kind for kind, _ in v3.ops] == ["scene", "flags", "output", "format", "frames"]


@pytest.mark.parametrize("args, why", [
    (["--python", "/x/a-overrides.py"], "'--python' is not one"),
    (["--python-expr", "import os; os.system('x')"], "--python-expr runs a script"),
    (["--python-expr", "import bpy; bpy.context.scene.render.resolution_x = 5"], "--python-expr runs a script"),
    (["--python-expr", "import bpy; bpy.context.scene.render.use_overwrite = 1"], "--python-expr runs a script"),
    (["-P", "x.py"], "'-P' is not one"),
    (["-a"], "'-a' is not one"),
    (["--", "--cycles-resumable-num-chunks", "4"], "after '--' is not one"),
    (["/x/b.blend"], "'/x/b.blend' is not one"),
])
def test_command_lines_that_need_a_fresh_blender(args, why):
    result = blender_warm.analyse(["blender", "--background", "/x/a.blend", *args])
    assert isinstance(result, str) and why in result, result


@pytest.mark.slow
def test_flamenco3_stock_render_tasks_render_warm_and_identical(blend, settings, tmp_path):
    """The v3 blender-render command with Flamenco 3.9's stock Simple Blender Render line:
    `--scene`, the render-settings expression, output, format, frames after the file."""
    import fworker.commands  # noqa: F401  (registers the commands)

    expr = ("import bpy; r = bpy.context.scene.render; r.use_file_extension = True; "
            "r.use_overwrite = False; r.use_placeholder = False")

    def stock(out, frames):
        return {"exe": "blender", "exeArgs": "-b -y", "argsBefore": [], "blendfile": blend,
                "args": ["--scene", "Scene", "--python-expr", expr, "--render-output", out,
                         "--render-format", "PNG", "--render-frame", frames]}

    recs = []
    for index, frames in enumerate(("1", "2..3")):
        rec = RecordingReporter()
        cmd = base.lookup("blender-render", "v3")(base.CommandContext(rec, logging.getLogger("test.warm"), settings))
        cmd.execute(cmd.validate(stock(str(tmp_path / f"w{index}" / "f_####"), frames)))
        recs.append(rec)
    assert any("scene already loaded" in line for line in recs[1].log)
    assert any(line.startswith("Scene switch for render: 'Scene'") for line in recs[1].log)
    assert recs[0].of("steps") == [1] and recs[1].of("steps") == [1, 1]  # a step per frame, as fresh
    fresh_args = stock(str(tmp_path / "fresh" / "f_####"), "1..3")
    run([tool("blender"), "-b", "-y", blend, *fresh_args["args"]], timeout=120)
    for index, frame in ((0, 1), (1, 2), (1, 3)):
        assert pixels(str(tmp_path / f"w{index}" / f"f_000{frame}.png")) == \
            pixels(str(tmp_path / "fresh" / f"f_000{frame}.png"))


@pytest.mark.slow
def test_the_end_of_a_task_leaves_the_warm_blender_alone(blend, settings, tmp_path):
    """A task's containment stops what the task started; the warm Blender is the worker's."""
    stray = []
    with containment.TaskScope("warm-test", grace=1.0):
        render(blend, str(tmp_path / "w1" / "f_####"), "1", settings)
        stray.append(subprocess.Popen(["sleep", "60"]))  # a process of the task: must not survive it
    pid = warm_pid()
    assert pid and not _zombie(pid)
    assert stray[0].wait(timeout=30) is not None
    rec = render(blend, str(tmp_path / "w2" / "f_####"), "2", settings)
    assert any("scene already loaded" in line for line in rec.log)


def test_the_instance_blender_arguments_are_understood():
    """--threads and --cycles-device of this instance (fworker.blenderargs) belong to how
    Blender is started: part of the warm Blender's key, not a reason for a fresh one."""
    from fworker import blenderargs

    settings = config.defaults().replace(blender_threads=2, blender_cycles_device="CPU")
    base_argv = ["blender", "--enable-autoexec", "-noaudio", "--background", "/x/a.blend",
                 "--render-output", "/o/f_##", "--render-frame", "1"]
    argv = blenderargs.apply(base_argv, settings)
    plan = blender_warm.analyse(argv)
    assert isinstance(plan, blender_warm.Plan), plan
    assert "--threads" in plan.key.argv and plan.key.argv[-2:] == ("--cycles-device", "CPU")
    other = blender_warm.analyse(blenderargs.apply(base_argv, settings.replace(blender_threads=3)))
    assert other.key != plan.key  # another thread count: another Blender
