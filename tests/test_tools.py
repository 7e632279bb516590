"""Finding Blender and FFmpeg (fworker.tools): the real ones installed here, and fake
programs in tmp_path that answer, hang or fail; the task types announced with them."""
import logging
import os
import pathlib
import stat
import subprocess
import sys

import pytest

from fworker import config, tools, wiring
from fworker.commands import base
from fworker.edge import detect
from fworker.errors import ConfigError
from tests.support.media import tool

REGISTRY = base.registered()


def settings(**changes):
    return config.load(files=[], overrides=changes)


def fake(tmp_path, name, body):
    """An executable shell script ``name`` in tmp_path doing ``body``."""
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


# --- finding one tool -----------------------------------------------------------------------


@pytest.mark.slow
def test_the_real_blender_and_ffmpeg_are_found_with_their_versions():
    found = tools.find_tools(settings())
    blender = subprocess.run([tool("blender"), "--version"], capture_output=True, text=True).stdout
    ffmpeg = subprocess.run([tool("ffmpeg"), "-version"], capture_output=True, text=True).stdout
    assert found["blender"].usable and found["blender"].path == tool("blender")
    assert f"Blender {found['blender'].version}" in blender and found["blender"].version[0].isdigit()
    assert found["ffmpeg"].usable and found["ffmpeg"].path == tool("ffmpeg")
    assert f"ffmpeg version {found['ffmpeg'].version}" in ffmpeg
    assert found["blender"].origin == "PATH"


def test_a_configured_path_comes_first_and_its_version_is_read(tmp_path):
    path = fake(tmp_path, "my-blender", 'echo "Read prefs: x"; echo "Blender 4.2.3 LTS"; echo "  build date: x"')
    found = tools.find_tool("blender", path)
    assert (found.usable, found.path, found.version, found.origin) == (True, path, "4.2.3", "blender_exe")
    assert found.describe() == f"{path} (Blender 4.2.3, from blender_exe)"


def test_a_configured_program_name_is_looked_up_on_path(tmp_path, monkeypatch):
    fake(tmp_path, "ffmpeg-6", 'echo "ffmpeg version 6.1 Copyright (c) the FFmpeg developers"')
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    found = tools.find_tool("ffmpeg", "ffmpeg-6")
    assert (found.path, found.version) == (str(tmp_path / "ffmpeg-6"), "6.1")


def test_an_empty_setting_means_the_plain_name_on_path(tmp_path, monkeypatch):
    fake(tmp_path, "blender", 'echo "Blender 9.9.9"')
    monkeypatch.setenv("PATH", str(tmp_path))
    assert tools.find_tool("blender", "").path == str(tmp_path / "blender")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    missing = tools.find_tool("blender", "")
    assert not missing.usable and missing.path is None
    assert missing.problem == "no executable 'blender' on PATH (set blender_exe to its location)"


@pytest.mark.parametrize("setup, problem", [
    (lambda d: str(d / "absent"), "no such file"),
    (str, "not a file"),
    (lambda d: (d / "plain").write_text("#!/bin/sh\n") and str(d / "plain"), "not executable"),
    (lambda d: "no-such-program-anywhere", "no such executable on PATH"),
])
def test_a_configured_tool_that_is_not_there_says_why_and_is_not_replaced_by_path(tmp_path, setup, problem):
    configured = setup(tmp_path)
    found = tools.find_tool("blender", configured)
    assert not found.usable and found.origin == "blender_exe"
    assert found.problem == f"blender_exe = {configured!r}: {problem}"


def test_a_tool_that_exits_non_zero_is_not_usable_and_its_last_words_are_kept(tmp_path):
    path = fake(tmp_path, "broken", 'echo "Blender 4.2.0"; echo "libfoo.so: cannot open shared object" >&2; exit 1')
    found = tools.find_tool("blender", path)
    assert not found.usable
    assert found.problem == f"`{path} --version` failed: exit code 1: libfoo.so: cannot open shared object"


def test_a_tool_that_prints_no_version_is_not_usable(tmp_path):
    path = fake(tmp_path, "impostor", 'echo "hello, I am not FFmpeg"')
    found = tools.find_tool("ffmpeg", path)
    assert found.problem == f"`{path} -version` printed no FFmpeg version (first line: 'hello, I am not FFmpeg')"


def test_a_file_that_is_no_program_is_not_usable(tmp_path):
    path = tmp_path / "text"
    path.write_text("just text, no #! line\n")
    path.chmod(0o755)
    found = tools.find_tool("ffmpeg", str(path))
    assert not found.usable and "cannot be run: Exec format error" in found.problem


def test_a_tool_that_hangs_is_stopped_after_the_timeout_with_its_children(tmp_path):
    marker = tmp_path / "pid"
    path = fake(tmp_path, "hangs", f"sleep 300 & echo $! > {marker}; wait")
    found = tools.find_tool("blender", path, timeout=0.5)
    assert found.problem == f"`{path} --version` did not answer within 0.5 s; stopped it"
    pid = int(marker.read_text())
    # Stopped (SIGTERM/SIGKILL) and reaped by gevent: the pid is gone or a zombie.
    state = pathlib.Path(f"/proc/{pid}/stat").read_text().split()[2] if os.path.exists(f"/proc/{pid}") else "gone"
    assert state in ("gone", "Z")


def test_the_hub_runs_while_a_tool_answers(tmp_path):
    import gevent

    path = fake(tmp_path, "slow", 'sleep 0.5; echo "Blender 4.0.0"')
    ticks = []
    ticker = gevent.spawn(lambda: [ticks.append(gevent.sleep(0.05)) for _ in range(1000)])
    try:
        found = tools.find_tool("blender", path)
    finally:
        ticker.kill()
    assert found.version == "4.0.0"
    assert len(ticks) >= 3, "the event loop was blocked while the tool ran"


def test_an_unchanged_tool_is_asked_once_a_changed_one_again(tmp_path):
    count = tmp_path / "count"
    path = fake(tmp_path, "counted", f'echo x >> {count}; echo "Blender 4.1.0"')
    tools.find_tool("blender", path)
    tools.find_tool("blender", path)
    assert count.read_text().count("x") == 1
    with open(path, "a") as f:
        f.write("# changed\n")
    tools.find_tool("blender", path)
    assert count.read_text().count("x") == 2


def test_both_tools_are_asked_at_the_same_time(tmp_path):
    # Each answers only once the other has started: asked one after the other, the first
    # would give up waiting (after 10 s) and print no version.
    def meets(me, other, answer):
        return fake(tmp_path, me, f"touch {tmp_path}/{me}.started; i=0; "
                                  f"while [ ! -e {tmp_path}/{other}.started ] && [ $i -lt 200 ]; do "
                                  f"sleep 0.05; i=$((i+1)); done; [ -e {tmp_path}/{other}.started ] && echo '{answer}'")

    found = tools.find_tools(settings(blender_exe=meets("b", "f", "Blender 4.0.0"),
                                      ffmpeg_exe=meets("f", "b", "ffmpeg version 6.0")))
    assert (found["blender"].version, found["ffmpeg"].version) == ("4.0.0", "6.0")


# --- the resolver ---------------------------------------------------------------------------------


def test_a_plain_tool_name_means_the_configured_tool():
    s = settings(blender_exe="~/blender-4.2/blender", ffmpeg_exe="")
    assert tools.resolve_exe("blender", s) == os.path.expanduser("~/blender-4.2/blender")
    assert tools.resolve_exe("ffmpeg", s) == "ffmpeg"  # not configured: PATH decides, as it did
    assert tools.resolve_exe("/usr/bin/blender", s) == "/usr/bin/blender"
    assert tools.resolve_exe("blender-3.6", s) == "blender-3.6"


def test_a_2x_command_with_plain_blender_runs_the_configured_one(tmp_path):
    path = fake(tmp_path, "blender-pinned", 'echo "Blender 4.2.0"')
    ctx = base.CommandContext(None, logging.getLogger("test"), settings(blender_exe=path))
    valid = base.lookup("blender_render")(ctx).validate({"blender_cmd": "blender --factory-startup",
                                                         "filepath": "/x.blend"})
    assert valid["blender_cmd"] == [path, "--factory-startup"]
    ffmpeg = base.lookup("create_video")(ctx).validate({"input_files": "/x/*.png", "output_file": "/x/o.mkv",
                                                          "fps": 24})
    assert ffmpeg["ffmpeg_cmd"] == ["ffmpeg"]  # ffmpeg_exe empty: unchanged
    echo = base.lookup("exec")(base.CommandContext(None, logging.getLogger("t"), settings(ffmpeg_exe=path)))
    assert echo.validate({"cmd": "ffmpeg -version"})["args"] == ["ffmpeg", "-version"], \
        "exec declares no tool: its program is taken as written"


# --- task types -----------------------------------------------------------------------------------


def test_task_type_needs_follow_the_command_classes():
    assert tools.task_type_needs("blender-render", REGISTRY) == ("blender",)
    assert tools.task_type_needs("exr-merge", REGISTRY) == ("blender",)
    assert tools.task_type_needs("video-encoding", REGISTRY) == ("ffmpeg",)
    assert tools.task_type_needs("test-blender-render", REGISTRY) == ("blender",)
    for task_type in ("sleep", "debug", "file-management", "misc"):
        assert tools.task_type_needs(task_type, REGISTRY) == ()
    # Flamenco 3's stock task types, whatever commands this worker has.
    assert tools.task_type_needs("blender", {}) == ("blender",)
    assert tools.task_type_needs("ffmpeg", {}) == ("ffmpeg",)
    # Every 2.x command that runs Blender or FFmpeg says so.
    for name in ("blender_render", "blender_render_progressive", "merge_progressive_renders",
                 "merge_progressive_render_sequence", "blender_render_audio", "exr_sequence_to_jpeg"):
        assert REGISTRY[("v2", name)].needs == ("blender",), name
    for name in ("create_video", "concatenate_videos", "mux_audio", "encode_audio"):
        assert REGISTRY[("v2", name)].needs == ("ffmpeg",), name


def test_a_plug_in_task_type_needs_what_its_command_declares():
    class Denoise(base.Command):
        name = "denoise"
        needs = ("blender",)

    commands = {**REGISTRY, ("v2", "denoise"): Denoise}
    assert tools.task_type_needs("denoising", commands, [("denoising", "denoise")]) == ("blender",)
    assert tools.task_type_needs("denoising", commands, [("other", "denoise")]) == ()


def test_task_types_whose_tool_is_missing_are_not_announced(tmp_path, caplog):
    blender = fake(tmp_path, "blender", 'echo "Blender 4.2.0"')
    s = settings(blender_exe=blender, ffmpeg_exe=str(tmp_path / "no-ffmpeg"))
    caplog.set_level(logging.WARNING, logger="fworker.tools")
    found = tools.capabilities(s, ["blender", "ffmpeg", "file-management", "misc", "video-encoding"], REGISTRY)
    assert found.announced == ("blender", "file-management", "misc")
    why = f"it needs FFmpeg, which is not usable: ffmpeg_exe = '{tmp_path / 'no-ffmpeg'}': no such file"
    assert dict(found.dropped) == {"ffmpeg": why, "video-encoding": why}
    assert [r.getMessage() for r in caplog.records] == [
        f"not announcing task type 'ffmpeg': {why}", f"not announcing task type 'video-encoding': {why}"]
    assert found.rows() == [("blender", f"{blender} (Blender 4.2.0, from blender_exe)"),
                            ("ffmpeg", f"not usable: ffmpeg_exe = '{tmp_path / 'no-ffmpeg'}': no such file"),
                            ("not announced", f"ffmpeg: {why}"), ("not announced", f"video-encoding: {why}")]


def test_tools_no_task_type_needs_are_not_run(tmp_path):
    count = tmp_path / "count"
    blender = fake(tmp_path, "blender", f'echo x >> {count}; echo "Blender 4.2.0"')
    found = tools.capabilities(settings(blender_exe=blender), ["debug", "sleep"], REGISTRY)
    assert found.announced == ("debug", "sleep") and not count.exists()
    assert found.rows()[0] == ("blender", "not looked for (no task type needs it)")


def test_the_wiring_announces_only_what_can_run_on_a_new_settings_value(tmp_path):
    s = settings(manager_url="http://127.0.0.1:9/", task_update_queue_db=str(tmp_path / "q.sqlite"),
                 task_types="sleep blender-render video-encoding", blender_exe=str(tmp_path / "gone"))
    worker = wiring.build_worker(s, credentials_path=None)
    worker.queue.close()
    assert worker.settings.task_types == ("sleep", "video-encoding")
    two = detect.make_edge("v2", worker.upstream, worker.settings, None)  # no edge before start()
    assert two.task_types() == ["sleep", "video-encoding"]
    assert s.task_types == ("sleep", "blender-render", "video-encoding"), "the caller's settings are unchanged"


def test_the_wiring_refuses_a_worker_that_could_run_nothing(tmp_path):
    s = settings(manager_url="http://127.0.0.1:9/", task_types="blender-render",
                 blender_exe=str(tmp_path / "gone"))
    with pytest.raises(ConfigError, match="none of the task types can be served: blender-render: it needs Blender"):
        wiring.capabilities(s)
    with pytest.raises(ConfigError, match="test-blender-render: it needs Blender"):
        wiring.capabilities(s.replace(task_types="debug"), test_mode=True)


# --- what an operator sees ------------------------------------------------------------------------


def check_config(tmp_path, text):
    cfg = tmp_path / "worker.cfg"
    cfg.write_text("[flamenco-worker]\n" + text)
    return subprocess.run([sys.executable, "-m", "fworker", "-c", str(cfg), "--check-config"],
                          capture_output=True, text=True, cwd=tmp_path, env=dict(os.environ, HOME=str(tmp_path)),
                          timeout=120)


@pytest.mark.slow
def test_check_config_shows_the_tools_and_what_is_left_out(tmp_path):
    out = check_config(tmp_path, f"ffmpeg_exe = {tmp_path}/nope\n")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "task types announced: sleep blender-render file-management exr-merge debug" in lines
    assert any(line.startswith(f"blender: {tool('blender')} (Blender ") for line in lines), out.stdout
    assert f"ffmpeg: not usable: ffmpeg_exe = '{tmp_path}/nope': no such file" in lines
    assert (f"not announced: video-encoding: it needs FFmpeg, which is not usable: "
            f"ffmpeg_exe = '{tmp_path}/nope': no such file") in lines


@pytest.mark.slow
def test_check_config_refuses_when_nothing_could_run(tmp_path):
    out = check_config(tmp_path, f"task_types = video-encoding\nffmpeg_exe = {tmp_path}/nope\n")
    assert out.returncode == 2
    assert "configuration error: none of the task types can be served: video-encoding: it needs FFmpeg" in out.stderr


def test_the_banner_shows_the_tools_and_what_is_left_out(tmp_path):
    from fworker import logsetup

    blender = fake(tmp_path, "blender", 'echo "Blender 4.2.0"')
    s = settings(manager_url="http://m:1/", task_types="blender-render video-encoding", blender_exe=blender,
                 ffmpeg_exe=str(tmp_path / "nope"))
    found = tools.capabilities(s, s.task_types, REGISTRY)
    text = logsetup.banner(s.replace(task_types=" ".join(found.announced)), "1.0", None, "q.db", found.rows())
    assert "  task types:    blender-render\n" in text
    assert f"  blender:       {blender} (Blender 4.2.0, from blender_exe)\n" in text
    assert "  not announced: video-encoding: it needs FFmpeg, which is not usable: ffmpeg_exe" in text
