"""The FFmpeg commands against the real FFmpeg (Debian's 5.1), and the parser."""
import dataclasses
import os

import pytest

from fworker import config
from fworker.commands import ffmpeg, ffmpeg_output
from fworker.errors import CommandFailed, InvalidSettings
from tests.support.media import ffprobe, make_frames, make_wav, tool

FAST = config.defaults().replace(activity_interval=0.0)


@dataclasses.dataclass(frozen=True)
class FFmpegMedia:
    frames: str  # folder of 5 PNGs, 65x37 (odd: libx264 needs the padding)
    wav: str  # 1 s stereo tone


@pytest.fixture(scope="session")
def ffmpeg_media(tmp_path_factory):
    tool("ffmpeg")
    folder = tmp_path_factory.mktemp("ffmpeg") / "média ü"
    make_frames(str(folder / "frames"))
    return FFmpegMedia(str(folder / "frames"), make_wav(str(folder / "tone.wav")))


@pytest.fixture(autouse=True)
def ffmpeg_installed():
    tool("ffmpeg")
    tool("ffprobe")


def video_stream(path):
    probe = ffprobe(path, count_frames=True)
    return next(s for s in probe["streams"] if s["codec_type"] == "video"), probe


@pytest.mark.slow
def test_create_video(run_command, ffmpeg_media, tmp_path):
    out = tmp_path / "vidéo out" / "it's a clip.mp4"
    rec = run_command("create_video", {"input_files": os.path.join(ffmpeg_media.frames, "*.png"),
                                       "output_file": str(out), "fps": 10}, FAST)
    stream, _ = video_stream(str(out))
    assert stream["codec_name"] == "h264" and stream["pix_fmt"] == "yuv420p"
    assert int(stream["nb_read_frames"]) == 5 and stream["r_frame_rate"] == "10/1"
    assert (stream["width"], stream["height"]) == (66, 38)  # padded to even sizes
    assert rec.of("output") == [[str(out)]]
    assert rec.of("progress")[-1] == 100
    assert any(a.startswith("FFmpeg: frame 5/5") for a in rec.of("activity")), rec.of("activity")
    assert not any(line.startswith("out_time_us=") for line in rec.log)  # -progress lines stay out
    assert any("Input #0" in line for line in rec.log)


@pytest.mark.slow
def test_create_video_with_an_index_file_as_on_windows(run_command, ffmpeg_media, tmp_path, monkeypatch):
    monkeypatch.setattr(ffmpeg, "USE_GLOB", False)
    out = tmp_path / "win.mp4"
    run_command("create_video", {"input_files": os.path.join(ffmpeg_media.frames, "frame_*.png"),
                                 "output_file": str(out), "fps": 25}, FAST)
    stream, _ = video_stream(str(out))
    assert int(stream["nb_read_frames"]) == 5 and stream["r_frame_rate"] == "25/1"
    assert not [n for n in os.listdir(ffmpeg_media.frames) if n.endswith(".txt")]


def make_clip(run_command, ffmpeg_media, path, fps=10):
    run_command("create_video", {"input_files": os.path.join(ffmpeg_media.frames, "*.png"),
                                 "output_file": str(path), "fps": fps})


@pytest.mark.slow
def test_concatenate_videos(run_command, recorder, ffmpeg_media, tmp_path):
    clips = tmp_path / "clips 'quoted' ü"
    for name in ("a clip.mp4", "b 'q' clip.mp4", "c\"double\".mp4"):
        make_clip(run_command, ffmpeg_media, clips / name)
    recorder.events.clear()
    out = tmp_path / "joined" / "all.mp4"
    rec = run_command("concatenate_videos", {"input_files": str(clips / "*.mp4"), "output_file": str(out)}, FAST)
    stream, _ = video_stream(str(out))
    assert int(stream["nb_read_frames"]) == 15
    assert sorted(os.listdir(clips)) == ["a clip.mp4", "b 'q' clip.mp4", "c\"double\".mp4"]  # index removed
    assert rec.of("output") == [[str(out)]]
    assert any(line.startswith("    file ") and "'\\''q'\\''" in line for line in rec.log)


@pytest.mark.slow
def test_encode_audio_then_mux(run_command, ffmpeg_media, tmp_path):
    aac = tmp_path / "sound ü.m4a"
    rec = run_command("encode_audio", {"input_file": ffmpeg_media.wav, "codec": "aac", "bitrate": "64k",
                                       "output_file": str(aac)}, FAST)
    probe = ffprobe(str(aac))
    assert probe["streams"][0]["codec_name"] == "aac"
    assert float(probe["format"]["duration"]) == pytest.approx(1.0, abs=0.1)
    assert rec.of("output") == [[str(aac)]] and rec.of("progress")[-1] == 100

    video = tmp_path / "v.mp4"
    make_clip(run_command, ffmpeg_media, video)
    muxed = tmp_path / "muxed" / "final cut.mp4"
    run_command("mux_audio", {"audio_file": str(aac), "video_file": str(video), "output_file": str(muxed)}, FAST)
    codecs = sorted(s["codec_name"] for s in ffprobe(str(muxed))["streams"])
    assert codecs == ["aac", "h264"]


@pytest.mark.slow
def test_progress_from_the_input_duration(run_command, ffmpeg_media, tmp_path):
    rec = run_command("encode_audio", {"input_file": ffmpeg_media.wav, "codec": "flac", "bitrate": 128000,
                                       "output_file": str(tmp_path / "t.flac")}, FAST)
    progress = rec.of("progress")
    assert progress == sorted(progress) and progress[-1] == 100
    assert any(" of 00:00:01" in a for a in rec.of("activity")), rec.of("activity")


@pytest.mark.slow
def test_ffmpeg_error_is_in_the_failure(run_command, ffmpeg_media, tmp_path):
    with pytest.raises(CommandFailed) as err:
        run_command("encode_audio", {"input_file": ffmpeg_media.wav, "codec": "no_such_codec",
                                     "bitrate": "64k", "output_file": str(tmp_path / "x.m4a")})
    message = str(err.value)
    assert "encode_audio" in message and "exit code" in message
    assert "Unknown encoder 'no_such_codec'" in message


def test_glob_matching_nothing(run_command, tmp_path):
    with pytest.raises(CommandFailed) as err:
        run_command("create_video", {"input_files": str(tmp_path / "*.png"), "output_file": str(tmp_path / "o.mp4"),
                                     "fps": 24})
    assert "no files match" in str(err.value) and "input_files" in str(err.value)


@pytest.mark.parametrize("name, settings, setting", [
    ("create_video", {"input_files": "*.png", "output_file": "o.mp4", "fps": 0}, "fps"),
    ("create_video", {"input_files": "*.png", "output_file": "o.mp4"}, "fps"),
    ("create_video", {"input_files": "*.png", "fps": 24}, "output_file"),
    ("create_video", {"input_files": "*.png", "output_file": "o.mp4", "fps": 24,
                      "ffmpeg_cmd": "/no/such/ffmpeg"}, "ffmpeg_cmd"),
    ("concatenate_videos", {"output_file": "o.mp4"}, "input_files"),
    # JSON null is no value: it used to pass validation as None.
    ("concatenate_videos", {"input_files": None, "output_file": "o.mp4"}, "input_files"),
    ("create_video", {"input_files": "*.png", "output_file": "o.mp4", "fps": None}, "fps"),
    ("encode_audio", {"input_file": "a.wav", "codec": "aac", "bitrate": None, "output_file": "o.m4a"}, "bitrate"),
    ("mux_audio", {"audio_file": "a.flac", "video_file": "v.mp4"}, "output_file"),
    ("encode_audio", {"input_file": "a.wav", "codec": "aac", "output_file": "o.m4a"}, "bitrate"),
    ("encode_audio", {"input_file": "a.wav", "codec": "", "bitrate": "64k", "output_file": "o.m4a"}, "codec"),
])
def test_validation_errors_name_command_and_setting(run_command, name, settings, setting):
    with pytest.raises(InvalidSettings) as err:
        run_command(name, settings)
    assert (err.value.command, err.value.setting) == (name, setting)


@pytest.mark.slow
def test_missing_inputs_are_named(run_command, ffmpeg_media, tmp_path):
    with pytest.raises(InvalidSettings) as err:
        run_command("mux_audio", {"audio_file": ffmpeg_media.wav, "video_file": str(tmp_path / "none.mp4"),
                                  "output_file": str(tmp_path / "o.mp4")})
    assert err.value.setting == "video_file" and "does not exist" in str(err.value)
    with pytest.raises(InvalidSettings) as err:
        run_command("encode_audio", {"input_file": str(tmp_path / "none.wav"), "codec": "aac",
                                     "bitrate": "64k", "output_file": str(tmp_path / "o.m4a")})
    assert err.value.setting == "input_file"


# --- pure parts ---------------------------------------------------------------


@pytest.mark.parametrize("path, quoted", [
    ("/a/b.mp4", "'/a/b.mp4'"),
    ("/a b/c d.mp4", "'/a b/c d.mp4'"),
    ("/a/it's.mp4", "'/a/it'\\''s.mp4'"),
    ('/a/"x"\\y.mp4', "'/a/\"x\"\\y.mp4'"),  # nothing but ' is special inside quotes
    ("/ü/帧.mp4", "'/ü/帧.mp4'"),
])
def test_concat_quote(path, quoted):
    assert ffmpeg.concat_quote(path) == quoted


def test_concat_quote_refuses_line_breaks():
    with pytest.raises(CommandFailed):
        ffmpeg.concat_quote("/a/b\nc.mp4")


# In the format of FFmpeg 5.1 with -progress pipe:1 (the stats line split at its \r;
# the video stats line and the key=value lines as captured, the audio lines abridged).
FFMPEG_51 = """\
Input #0, wav, from 'tone.wav':
  Duration: 00:00:02.00, bitrate: 1536 kb/s
frame=    5 fps=0.0 q=22.0 Lsize=       3kB time=00:00:00.40 bitrate=  55.6kbits/s speed=66.7x
size=      64kB time=00:00:01.00 bitrate= 524.3kbits/s speed= 167x
bitrate= 524.3kbits/s
total_size=65536
out_time_us=1000000
out_time_ms=1000000
out_time=00:00:01.000000
speed= 167x
progress=continue
out_time_us=2000000
progress=end
""".splitlines()


def test_ffmpeg_output_progress_by_duration():
    parser = ffmpeg_output.FFmpegOutput()
    updates = [parser.feed(line) for line in FFMPEG_51]
    assert parser.duration == 2.0
    assert [u.is_progress for u in updates[:4]] == [False] * 4  # info and stats lines go to the log
    assert all(u.is_progress for u in updates[4:])
    assert [u.percent for u in updates if u.percent is not None] == [50, 100]
    assert [u.activity for u in updates if u.activity] == [
        "FFmpeg: 00:00:01 of 00:00:02, speed 167x", "FFmpeg: 00:00:02 of 00:00:02 (finishing)"]


def test_ffmpeg_output_progress_by_frames():
    parser = ffmpeg_output.FFmpegOutput(frames_total=4)
    updates = [parser.feed(line) for line in ["frame=1", "out_time_us=-9223372036854775807",
                                              "progress=continue", "frame=3", "progress=continue"]]
    assert [u.percent for u in updates if u.percent is not None] == [25, 75]
    assert updates[2].activity == "FFmpeg: frame 1/4"


@pytest.mark.parametrize("line, pair", [
    ("frame=12", ("frame", "12")),
    ("frame=   12 fps=0.0 q=-1.0 size=N/A time=00:00:00.48", None),  # the stats line
    ("stream_0_0_q=22.0", ("stream_0_0_q", "22.0")),
    ("bitrate=  55.6kbits/s", ("bitrate", "55.6kbits/s")),
    ("encoder=Lavf59", None),
])
def test_progress_key(line, pair):
    assert ffmpeg_output.progress_key(line) == pair
