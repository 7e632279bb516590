"""Flamenco 3's blender-render and frames-to-video against the real Blender and FFmpeg,
with the command lines of Flamenco 3.9's stock "Simple Blender Render" job type."""
import ast
import math
import os
import stat

import pytest

from fworker import cmdline, config
from fworker.commands import base, ffmpeg, media3
from fworker.errors import CommandFailed, InvalidSettings
from tests.support.media import ffprobe, make_frames

FAST = config.defaults().replace(activity_interval=0.0, blender_filepath_wait=0.2)

# What the stock job type puts in every render task's args (its render settings, one line).
STOCK_PY_EXPR = ("import bpy; r = bpy.context.scene.render; r.use_file_extension = True; "
                 "r.use_overwrite = False; r.use_placeholder = False")
# Its video task's args; the frame rate goes in as a number.
STOCK_VIDEO_ARGS = ["-c:v", "h264", "-crf", "20", "-g", "18", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2",
                    "-pix_fmt", "yuv420p", "-r", 24, "-y"]


@pytest.fixture
def run3(run_command):
    def run(name, settings, settings_obj=FAST):
        return run_command(name, settings, settings_obj, dialect="v3")
    return run


def stock_render(blend, output, frames, fmt="PNG"):
    """A render task's command as Flamenco 3.9's Simple Blender Render writes it
    ({blender} and {blenderArgs} expanded to the Manager's defaults)."""
    return {"exe": "blender", "exeArgs": "-b -y", "argsBefore": [], "blendfile": blend,
            "args": ["--scene", "Scene", "--python-expr", STOCK_PY_EXPR, "--render-output", output,
                     "--render-format", fmt, "--render-frame", frames]}


def echo_args_program(tmp_path):
    """A program that prints each of its arguments on a line of its own."""
    path = tmp_path / "print-args"
    path.write_text('#!/bin/sh\nfor a in "$@"; do printf "ARG %s\\n" "$a"; done\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


# --- blender-render ---------------------------------------------------------------------


@pytest.mark.slow
def test_stock_render_then_the_same_task_again(run3, recorder, blender_media, tmp_path):
    out = tmp_path / "render ü"
    settings = stock_render(blender_media.blend, str(out / "######"), "1..2")
    run3("blender-render", settings)
    frames = [out / "000001.png", out / "000002.png"]
    assert all(f.is_file() for f in frames)
    assert ffprobe(str(frames[0]))["streams"][0]["width"] == 64
    assert recorder.of("steps") == [1, 1]  # a step per "Time:" line
    assert [p for paths in recorder.of("output") for p in paths] == [str(f) for f in frames]
    assert "Blender: frame 2 (2/2): Sample 4/4" in recorder.of("activity")

    # Handed out again (a worker restarted): the frames exist and are not overwritten.
    recorder.events.clear()
    run3("blender-render", settings)
    assert recorder.of("steps") == [1, 1]  # a step per "skipping existing frame" line
    assert recorder.of("output") == []
    assert sum("skipping existing frame" in line.lower() for line in recorder.log) == 2


@pytest.mark.slow
def test_argument_order_and_no_blendfile(run3, recorder, blender_media):
    show = "import sys; print('ARGV', sys.argv[1:])"
    run3("blender-render", {"exe": "blender", "exeArgs": "-b  --factory-startup", "argsBefore": ["-noaudio"],
                            "blendfile": blender_media.blend, "args": ["--python-expr", show]})
    argv = ast.literal_eval(next(line for line in recorder.log if line.startswith("ARGV")).split(" ", 1)[1])
    assert argv == ["-b", "--factory-startup", "-noaudio", blender_media.blend, "--python-expr", show]

    recorder.events.clear()  # "" leaves the blend file out: Blender starts with its default scene
    run3("blender-render", {"exe": "blender", "exeArgs": "-b", "blendfile": "", "args": ["--python-expr", show]})
    argv = ast.literal_eval(next(line for line in recorder.log if line.startswith("ARGV")).split(" ", 1)[1])
    assert argv == ["-b", "--python-expr", show]
    assert recorder.of("steps") == []


@pytest.mark.slow
def test_blender_error_line_is_in_the_failure(run3, blender_media, tmp_path):
    # Denoising on: Debian's Blender has no OpenImageDenoise, prints an Error: line, exits 1.
    settings = stock_render(blender_media.blend, str(tmp_path / "f_#"), "1")
    settings["args"][3] += "; bpy.context.scene.cycles.use_denoising = True"
    with pytest.raises(CommandFailed) as err:
        run3("blender-render", settings)
    assert "'blender-render'" in str(err.value) and "exit code 1" in str(err.value)
    assert "Error: Build without OpenImageDenoiser" in str(err.value)


def test_missing_blendfile_fails_naming_it(run3, tmp_path):
    missing = str(tmp_path / "on the share.blend")
    with pytest.raises(CommandFailed) as err:
        run3("blender-render", stock_render(missing, str(tmp_path / "f_#"), "1"))
    assert "blendfile" in str(err.value) and missing in str(err.value) and "waited 0.2 s" in str(err.value)


def test_exe_other_than_a_tool_name_runs_as_given(run3, recorder, tmp_path):
    program = echo_args_program(tmp_path)
    blend = tmp_path / "e.blend"
    blend.write_bytes(b"BLENDER")
    run3("blender-render", {"exe": program, "exeArgs": "'a b' c", "argsBefore": ["d"], "blendfile": str(blend),
                            "args": ["f", 2, 2.5, 24.0]})
    assert [line for line in recorder.log if line.startswith("ARG ")] == [
        "ARG a b", "ARG c", "ARG d", f"ARG {blend}", "ARG f", "ARG 2", "ARG 2.5", "ARG 24"]


# --- frames-to-video --------------------------------------------------------------------


@pytest.mark.slow
def test_stock_preview_video(run3, recorder, tmp_path):
    frames = make_frames(str(tmp_path / "render ü"), count=5)
    output = tmp_path / "render ü" / "shot-1-5.mp4"
    run3("frames-to-video", {"exe": "ffmpeg", "fps": 24, "inputGlob": str(tmp_path / "render ü" / "*.png"),
                             "outputFile": str(output), "args": STOCK_VIDEO_ARGS})
    probe = ffprobe(str(output), count_frames=True)
    video = probe["streams"][0]
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", 66, 38)  # padded to even
    assert video["nb_read_frames"] == str(len(frames)) and video["r_frame_rate"] == "24/1"
    assert recorder.of("progress")[-1] == 100
    assert recorder.of("activity")[0] == f"encoding 5 images to {output}"
    assert recorder.of("output") == []  # a video is no preview image for a Flamenco 3 Manager


@pytest.mark.slow
def test_frames_to_video_with_an_index_file_as_on_windows(run3, recorder, tmp_path, monkeypatch):
    monkeypatch.setattr(ffmpeg, "USE_GLOB", False)
    make_frames(str(tmp_path / "frames"), count=4)
    output = tmp_path / "out" / "v.mp4"
    run3("frames-to-video", {"exe": "ffmpeg", "fps": 23.976, "inputGlob": str(tmp_path / "frames" / "*.png"),
                             "outputFile": str(output), "args": STOCK_VIDEO_ARGS[:-3]})
    video = ffprobe(str(output), count_frames=True)["streams"][0]
    assert video["nb_read_frames"] == "4" and video["r_frame_rate"] == "2997/125"  # 23.976
    assert sorted(os.listdir(tmp_path / "frames")) == [f"frame_000{n}.png" for n in range(1, 5)]  # no index left
    assert any(line.startswith("concat index") for line in recorder.log)


def test_frames_to_video_argument_order(run3, recorder, tmp_path):
    program = echo_args_program(tmp_path)
    run3("frames-to-video", {"exe": program, "exeArgs": "-v 'warning'", "fps": 29.97, "argsBefore": ["-an"],
                             "inputGlob": "/r/*.png", "outputFile": str(tmp_path / "v.mp4"),
                             "args": ["-c:v", "h264", "-r", 29.97]})
    assert [line[4:] for line in recorder.log if line.startswith("ARG ")] == [
        "-v", "warning", *ffmpeg.COMMON_ARGS, "-an", "-r", "29.97", "-pattern_type", "glob", "-i", "/r/*.png",
        "-c:v", "h264", "-r", "29.97", "-r", "29.97", str(tmp_path / "v.mp4")]


@pytest.mark.slow
def test_ffmpeg_failure_says_why(run3, tmp_path):
    with pytest.raises(CommandFailed) as err:
        run3("frames-to-video", {"exe": "ffmpeg", "fps": 24, "inputGlob": str(tmp_path / "none-*.png"),
                                 "outputFile": str(tmp_path / "v.mp4"), "args": ["-y"]})
    assert "'frames-to-video'" in str(err.value) and "FFmpeg said:" in str(err.value)
    assert not (tmp_path / "v.mp4").exists()


# --- validation -------------------------------------------------------------------------

RENDER = {"exe": "blender", "blendfile": "/x.blend"}
VIDEO = {"exe": "ffmpeg", "fps": 24, "inputGlob": "/r/*.png", "outputFile": "/r/v.mp4"}


@pytest.mark.parametrize("name, settings, setting", [
    ("blender-render", {"blendfile": "/x.blend"}, "exe"),
    ("blender-render", {**RENDER, "exe": ""}, "exe"),
    ("blender-render", {**RENDER, "exe": "/opt/no-such/blender"}, "exe"),
    ("blender-render", {**RENDER, "exe": 7}, "exe"),
    ("blender-render", {"exe": "blender"}, "blendfile"),
    ("blender-render", {**RENDER, "blendfile": None}, "blendfile"),
    ("blender-render", {**RENDER, "exeArgs": "-b 'unbalanced"}, "exeArgs"),
    ("blender-render", {**RENDER, "exeArgs": "x" * (cmdline.MAX_TEXT + 1)}, "exeArgs"),
    ("blender-render", {**RENDER, "exeArgs": ["-b"]}, "exeArgs"),
    ("blender-render", {**RENDER, "args": "--render-frame 1"}, "args"),
    ("blender-render", {**RENDER, "args": ["-f", None]}, "args"),
    ("blender-render", {**RENDER, "args": ["-f", True]}, "args"),
    ("blender-render", {**RENDER, "args": ["-f", {"a": 1}]}, "args"),
    ("blender-render", {**RENDER, "argsBefore": ["a\0b"]}, "argsBefore"),
    ("blender-render", {**RENDER, "argsBefore": ["-x", math.inf]}, "argsBefore"),
    ("frames-to-video", {**VIDEO, "fps": 0}, "fps"),
    ("frames-to-video", {**VIDEO, "fps": -24}, "fps"),
    ("frames-to-video", {**VIDEO, "fps": "24"}, "fps"),
    ("frames-to-video", {**VIDEO, "fps": math.nan}, "fps"),
    ("frames-to-video", {k: v for k, v in VIDEO.items() if k != "fps"}, "fps"),
    ("frames-to-video", {**VIDEO, "inputGlob": ""}, "inputGlob"),
    ("frames-to-video", {k: v for k, v in VIDEO.items() if k != "outputFile"}, "outputFile"),
    ("frames-to-video", {**VIDEO, "exe": "/opt/no-such/ffmpeg"}, "exe"),
    ("frames-to-video", {**VIDEO, "args": ["-y", []]}, "args"),
])
def test_validation_names_command_and_parameter(run3, name, settings, setting):
    with pytest.raises(InvalidSettings) as err:
        run3(name, settings)
    assert (err.value.command, err.value.setting) == (name, setting)
    assert name in str(err.value) and setting in str(err.value)


def test_the_commands_are_v3_only():
    import fworker.commands  # noqa: F401  (registration)

    for name in ("blender-render", "frames-to-video"):
        assert base.lookup(name, "v3").dialects == ("v3",)
        with pytest.raises(Exception, match="unknown command"):
            base.lookup(name, "v2")


@pytest.mark.parametrize("args, frames", [
    (["--render-frame", "1..3"], 3),
    (["-f", "1", "-f", "5,7"], 3),
    (["--render-output", "/o/#", "--render-frame", "1..2,10"], 3),
    (["-a"], None),
    (["--render-frame", "+1..5"], None),  # depends on the scene's range
    (["--render-frame", "nonsense"], None),
    ([], None),
])
def test_frames_requested(args, frames):
    assert media3.frames_requested(args) == frames


def test_tool_names_resolve_to_the_workers_tools(run3, recorder, tmp_path):
    # blender_exe names the Blender this worker uses: a plain "blender" in a task means it.
    program = echo_args_program(tmp_path)
    settings = FAST.replace(blender_exe=program)
    blend = tmp_path / "x.blend"
    blend.write_bytes(b"BLENDER")
    run3("blender-render", {"exe": "blender", "blendfile": str(blend)}, settings)
    assert [line for line in recorder.log if line.startswith("ARG ")] == [f"ARG {blend}"]
    recorder.events.clear()
    run3("frames-to-video", {**VIDEO, "exe": "ffmpeg", "outputFile": str(tmp_path / "v.mp4")},
         FAST.replace(ffmpeg_exe=program))
    assert f"ARG {tmp_path / 'v.mp4'}" in recorder.log
