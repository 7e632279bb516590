"""The Blender commands against the real Blender (Debian's 3.4), on tiny media."""
import os
import shutil
import time

import gevent
import psutil
import pytest

from fworker import config
from fworker.commands import base
from fworker.errors import CommandFailed, InvalidSettings
from tests.support.media import ffprobe, first_pixel, tool
from tests.support.waiting import wait_until

FAST = config.defaults().replace(activity_interval=0.0, blender_filepath_wait=5.0, abort_grace_period=3.0)


@pytest.fixture(autouse=True)
def blender_installed():
    tool("blender")  # fails (never skips) when missing


def blender_settings(blend, **extra):
    return {"blender_cmd": "blender", "filepath": blend, **extra}


def assert_timing_phases(rec, *phases):
    seen = [phase for phase, seconds in rec.of("timing") if seconds >= 0]
    for phase in phases:
        assert phase in seen, f"no timing for {phase!r} in {seen}"


@pytest.mark.slow
def test_render_one_frame_png(run_command, blender_media, tmp_path):
    out = tmp_path / "out put ü"
    rec = run_command("blender_render", blender_settings(
        blender_media.blend, render_output=str(out / "frame_####"), format="PNG", frames="1"), FAST)
    png = out / "frame_0001.png"
    assert png.is_file()
    assert ffprobe(str(png))["streams"][0]["width"] == 64
    assert rec.of("output") == [[str(png)]]
    progress = rec.of("progress")
    assert progress[-1] == 100 and 25 in progress and progress == sorted(progress)
    assert "Blender: frame 1 (1/1): Sample 1/4" in rec.of("activity")
    assert any(line.startswith("Read blend:") for line in rec.log)
    assert_timing_phases(rec, "starting blender", "loading blendfile", "rendering")


@pytest.mark.slow
def test_render_frame_range_exr_with_overrides(run_command, blender_media, tmp_path):
    blend = tmp_path / "shot 01.blend"
    shutil.copy(blender_media.blend, blend)
    (tmp_path / "shot 01-overrides.py").write_text(
        "import bpy\nbpy.context.scene.render.resolution_x = 32  # from the overrides\n", encoding="utf-8")
    out = tmp_path / "renders"
    rec = run_command("blender_render", blender_settings(
        str(blend), render_output=str(out / "f_##"), format="OPEN_EXR", frames="1..3",
        python_expr="import sys; print('ARGV', sys.argv)"), FAST)
    argv_line = next(line for line in rec.log if line.startswith("ARGV"))
    assert argv_line.endswith("'--render-format', 'EXR', '--render-frame', '1..3']")
    files = [out / f"f_0{n}.exr" for n in (1, 2, 3)]
    assert all(f.is_file() for f in files)
    assert ffprobe(str(files[0]))["streams"][0]["width"] == 32  # the overrides ran
    assert [p for paths in rec.of("output") for p in paths] == [str(f) for f in files]
    assert "    bpy.context.scene.render.resolution_x = 32  # from the overrides" in rec.log
    progress = rec.of("progress")
    assert progress == sorted(progress) and progress[-1] == 100 and 33 in progress
    assert "Blender: frame 2 (2/3): Sample 4/4" in rec.of("activity")


@pytest.mark.slow
def test_progressive_render_arguments(run_command, blender_media, tmp_path):
    out = tmp_path / "prog"
    rec = run_command("blender_render_progressive", blender_settings(
        blender_media.blend, render_output=str(out / "p_####"), frames="2",
        python_expr="import sys; print('ARGV', sys.argv[sys.argv.index('-noaudio'):])",
        cycles_num_chunks=4, cycles_chunk_start=2, cycles_chunk_end=3), FAST)
    argv_line = next(line for line in rec.log if line.startswith("ARGV"))
    assert argv_line.endswith(
        f"'--render-output', '{out}/p_####', '--render-frame', '2', '--', "
        "'--cycles-resumable-num-chunks', '4', '--cycles-resumable-start-chunk', '2', "
        "'--cycles-resumable-end-chunk', '3']")
    assert (out / "p_0002.png").is_file()


@pytest.mark.slow
def test_progressive_refuses_obsolete_cycles_chunk(run_command, blender_media):
    with pytest.raises(InvalidSettings) as err:
        run_command("blender_render_progressive", blender_settings(
            blender_media.blend, cycles_chunk=1, cycles_num_chunks=4, cycles_chunk_start=1, cycles_chunk_end=1))
    assert (err.value.command, err.value.setting) == ("blender_render_progressive", "cycles_chunk")
    assert "obsolete" in str(err.value) and "cycles_chunk_start" in str(err.value)


@pytest.mark.slow
def test_merge_two_exrs_is_the_weighted_average(run_command, blender_media, tmp_path):
    out = tmp_path / "merged ü" / "sum.exr"
    rec = run_command("merge_progressive_renders", {
        "blender_cmd": "blender", "input1": blender_media.flat_a, "input2": blender_media.flat_b,
        "output": str(out), "weight1": 1, "weight2": 3}, FAST)
    # (1 * (0.2, 0.4, 0.6, 1.0) + 3 * (1.0, 0.0, 0.5, 0.5)) / 4
    assert first_pixel(str(out)) == pytest.approx((0.8, 0.1, 0.525, 0.625), abs=1e-4)
    assert rec.of("output") == [[str(out)]]
    assert os.listdir(out.parent) == ["sum.exr"]  # no temporary file left
    assert rec.of("progress")[-1] == 100


@pytest.mark.slow
def test_merge_sequence(run_command, blender_media, tmp_path):
    out = tmp_path / "seq out" / "merged_######.exr"
    rec = run_command("merge_progressive_render_sequence", {
        "blender_cmd": "blender", "input1": blender_media.chunk_a, "input2": blender_media.chunk_b,
        "output": str(out), "weight1": 3, "weight2": 1, "frame_start": 1, "frame_end": 2}, FAST)
    produced = [p for paths in rec.of("output") for p in paths]
    expected = [str(out.parent / f"merged_00000{n}.exr") for n in (1, 2)]
    assert produced == expected
    assert first_pixel(expected[1]) == pytest.approx((0.4, 0.3, 0.575, 0.875), abs=1e-4)


@pytest.mark.slow
def test_merge_sequence_missing_frames_fail_before_blender_runs(run_command, blender_media, tmp_path):
    with pytest.raises(CommandFailed) as err:
        run_command("merge_progressive_render_sequence", {
            "blender_cmd": "blender", "input1": blender_media.chunk_a, "input2": blender_media.chunk_b,
            "output": str(tmp_path / "m_####.exr"), "weight1": 1, "weight2": 1, "frame_start": 1, "frame_end": 3})
    assert "frame_0003.exr" in str(err.value) and "merge_progressive_render_sequence" in str(err.value)
    assert not (tmp_path / "m_0001.exr").exists()


@pytest.mark.slow
def test_exr_sequence_to_jpeg(run_command, blender_media, tmp_path):
    seq = tmp_path / "exr seq ü"
    shutil.copytree(blender_media.exr_seq, seq)
    rec = run_command("exr_sequence_to_jpeg", blender_settings(
        blender_media.blend, exr_glob=str(seq / "shot_*.exr")), FAST)
    jpegs = [seq / f"preview-00000{n}.jpg" for n in (7, 8, 9)]
    assert all(j.is_file() for j in jpegs), os.listdir(seq)
    stream = ffprobe(str(jpegs[0]))["streams"][0]
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("mjpeg", 20, 10)
    assert [p for paths in rec.of("output") for p in paths] == [str(j) for j in jpegs]
    assert rec.of("progress")[-1] == 100


@pytest.mark.slow
def test_exr_glob_or_legacy_directory_exactly_one(blender_media, recorder):
    cmd = base.lookup("exr_sequence_to_jpeg")(base.CommandContext(recorder, None))
    legacy = cmd.validate(blender_settings(blender_media.blend, exr_directory="/renders/shot [1]"))
    assert legacy["exr_glob"] == "/renders/shot [[]1]/*.exr"  # the folder name is no pattern
    assert legacy["output_pattern"] == "preview-######.jpg"
    for settings in ({}, {"exr_glob": "/a/*.exr", "exr_directory": "/a"}):
        with pytest.raises(InvalidSettings) as err:
            cmd.validate(blender_settings(blender_media.blend, **settings))
        assert "exactly one" in str(err.value) and "exr_sequence_to_jpeg" in str(err.value)
    with pytest.raises(InvalidSettings) as err:
        cmd.validate(blender_settings(blender_media.blend, exr_glob="/a/*.exr", output_pattern="x/p.jpg"))
    assert err.value.setting == "output_pattern"


@pytest.mark.slow
def test_audio_mixdown_to_flac(run_command, blender_media, tmp_path):
    out = tmp_path / "audio ü" / "mix.flac"
    started = time.monotonic()
    rec = run_command("blender_render_audio", blender_settings(
        blender_media.audio_blend, render_output=str(out), frame_start=1, frame_end=12))
    elapsed = time.monotonic() - started
    activities = rec.of("activity")  # the default interval: at most one per 2 s, plus the last
    assert activities[0] == f"mixing down the audio of {blender_media.audio_blend}"
    assert activities[-1] == f"Blender produced {out} (1/1)"  # the latest, sent at the end
    assert len(activities) <= 2 + elapsed // 2  # timing is the behaviour: at most one per 2 s, plus the last
    probe = ffprobe(str(out))
    assert probe["streams"][0]["codec_name"] == "flac"
    assert float(probe["format"]["duration"]) == pytest.approx(0.5, abs=0.05)  # 12 frames at 24 fps
    assert rec.of("output") == [[str(out)]]


@pytest.mark.parametrize("name, settings, setting", [
    ("blender_render", {"filepath": "/x.blend"}, "blender_cmd"),
    ("blender_render", {"blender_cmd": "blender"}, "filepath"),
    ("blender_render", {"blender_cmd": "blender", "filepath": "/x.blend", "frames": "1-3"}, "frames"),
    ("blender_render", {"blender_cmd": "blender", "filepath": "/x.blend", "frames": "5..3"}, "frames"),
    ("blender_render", {"blender_cmd": "blender", "filepath": "/x.blend", "format": "PNG; rm"}, "format"),
    ("blender_render", {"blender_cmd": "blender", "filepath": "", "frames": "1"}, "filepath"),
    ("blender_render", {"blender_cmd": "'unbalanced", "filepath": "/x.blend"}, "blender_cmd"),
    ("blender_render_progressive", {"blender_cmd": "blender", "filepath": "/x.blend", "cycles_num_chunks": 4,
                                    "cycles_chunk_start": 3, "cycles_chunk_end": 2}, "cycles_chunk_end"),
    ("blender_render_progressive", {"blender_cmd": "blender", "filepath": "/x.blend", "cycles_num_chunks": 4,
                                    "cycles_chunk_start": 0, "cycles_chunk_end": 2}, "cycles_chunk_start"),
    ("merge_progressive_renders", {"blender_cmd": "blender", "input1": "a", "input2": "b", "output": "c",
                                   "weight1": 0, "weight2": 0}, "weight2"),
    ("merge_progressive_renders", {"blender_cmd": "blender", "input1": "a", "input2": "b", "output": "c",
                                   "weight1": "1", "weight2": 1}, "weight1"),
    ("merge_progressive_render_sequence", {"blender_cmd": "blender", "input1": "a_#", "input2": "b_#",
                                           "output": "c", "weight1": 1, "weight2": 1, "frame_start": 1,
                                           "frame_end": 2}, "output"),
    ("blender_render_audio", {"blender_cmd": "blender", "filepath": "/x.blend"}, "render_output"),
    ("blender_render_audio", {"blender_cmd": "blender", "filepath": "/x.blend", "render_output": "/a.flac",
                              "frame_start": 5, "frame_end": 1}, "frame_end"),
])
def test_validation_errors_name_command_and_setting(run_command, name, settings, setting):
    with pytest.raises(InvalidSettings) as err:
        run_command(name, settings)
    assert (err.value.command, err.value.setting) == (name, setting)
    assert name in str(err.value) and setting in str(err.value)


@pytest.mark.slow
def test_missing_blender_program(run_command, blender_media):
    with pytest.raises(InvalidSettings) as err:
        run_command("blender_render", {"blender_cmd": "/opt/no-such/blender --factory-startup",
                                       "filepath": blender_media.blend, "frames": "1"})
    assert err.value.setting == "blender_cmd" and "/opt/no-such/blender" in str(err.value)


def test_filepath_that_never_appears(run_command, recorder, tmp_path):
    missing = tmp_path / "on the share.blend"
    settings = config.defaults().replace(blender_filepath_wait=0.3, activity_interval=0.0)
    started = time.monotonic()
    with pytest.raises(CommandFailed) as err:
        run_command("blender_render", blender_settings(str(missing), frames="1"), settings)
    assert time.monotonic() - started >= 0.3  # timing is the behaviour: it waited blender_filepath_wait
    assert str(missing) in str(err.value) and "waited 0.3 s" in str(err.value)
    assert f"waiting for {missing} to appear" in recorder.of("activity")


@pytest.mark.slow
def test_filepath_that_appears_late(run_command, blender_media, tmp_path):
    late = tmp_path / "late.blend"
    # The share "catches up" while the command waits (this is the scenario, not a test wait).
    copier = gevent.spawn_later(0.3, shutil.copy, blender_media.blend, late)
    rec = run_command("blender_render", blender_settings(
        str(late), python_expr="print('LOADED', __import__('bpy').data.filepath)"), FAST)
    copier.join()
    assert f"LOADED {late}" in rec.log
    assert f"waiting for {late} to appear" in rec.of("activity")


@pytest.mark.slow
def test_error_line_is_in_the_failure(run_command, blender_media, tmp_path):
    # Denoising on: Debian's Blender has no OpenImageDenoise, prints an Error: line, exits 1.
    with pytest.raises(CommandFailed) as err:
        run_command("blender_render", blender_settings(
            blender_media.blend, python_expr="import bpy; bpy.context.scene.cycles.use_denoising = True",
            render_output=str(tmp_path / "f_#"), frames="1"), FAST)
    message = str(err.value)
    assert "exit code 1" in message and "Error: Build without OpenImageDenoiser" in message


@pytest.mark.slow
def test_exit_0_without_saved_image_fails(run_command, blender_media, tmp_path):
    with pytest.raises(CommandFailed) as err:
        run_command("blender_render", blender_settings(
            blender_media.blend, python_expr="import sys; sys.exit(0)",
            render_output=str(tmp_path / "f_#"), frames="1..2"), FAST)
    assert "saved nothing" in str(err.value) and "1..2" in str(err.value)


@pytest.mark.slow
def test_python_error_in_overrides_is_explained(run_command, blender_media, tmp_path):
    blend = tmp_path / "broken.blend"
    shutil.copy(blender_media.blend, blend)
    (tmp_path / "broken-overrides.py").write_text("raise RuntimeError('bad override')\n")
    with pytest.raises(CommandFailed) as err:
        run_command("blender_render", blender_settings(str(blend), frames="1"), FAST)
    assert "code 42 (a Python script raised an exception)" in str(err.value)
    assert "RuntimeError: bad override" in str(err.value)


def blender_children():
    return [p for p in psutil.Process().children(recursive=True) if "blender" in p.name()]


@pytest.mark.slow
def test_abort_during_render_leaves_no_blender(run_command, recorder, blender_media, tmp_path):
    assert blender_children() == []
    runner = gevent.spawn(run_command, "blender_render", blender_settings(
        blender_media.blend, python_expr="import bpy; bpy.context.scene.cycles.samples = 10000000",
        render_output=str(tmp_path / "f_####"), frames="1"), FAST)
    wait_until(lambda: any("Sample " in line for line in recorder.log), 60, "Blender to render samples")
    (blender,) = blender_children()
    runner.kill(block=True, timeout=30)
    assert runner.dead and isinstance(runner.value, gevent.GreenletExit)
    assert not blender.is_running() or blender.status() == psutil.STATUS_ZOMBIE
    assert blender_children() == []
    assert not (tmp_path / "f_0001.png").exists()
