"""Previews for a Flamenco 3 Manager (fworker.preview): real FFmpeg on tiny images made
with its lavfi test sources, fake FFmpegs that fail or hang, and a recording send()
standing in for the HTTP edge (which is not part of this module)."""
import json
import logging
import os
import pathlib
import stat
import subprocess
import time

import gevent
import pytest

from fworker import preview
from fworker.errors import RetryLater
from tests.support.media import tool
from tests.support.waiting import wait_until


def lavfi(out, source, *args):
    subprocess.run([tool("ffmpeg"), "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", source,
                    "-frames:v", "1", *args, str(out)], check=True, timeout=120)
    return str(out)


def can_encode_exr() -> bool:
    encoders = subprocess.run([tool("ffmpeg"), "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    return any(line.split()[1:2] == ["exr"] for line in encoders.splitlines() if line.strip())


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    # A '%' and a space in the name (FFmpeg's image2 would read '%d' as a frame number).
    odd = str(folder / "frame 100%d.png")
    os.rename(lavfi(folder / "plain.png", "testsrc=size=64x48"), odd)
    made = {
        "png": odd,
        "png16": lavfi(folder / "deep.png", "testsrc=size=256x256", "-vf", "noise=alls=60:allf=t",
                       "-pix_fmt", "rgb48be"),
        "jpeg": lavfi(folder / "photo.jpg", "testsrc=size=64x48"),
        "tiff": lavfi(folder / "scan.tif", "testsrc=size=64x48"),
    }
    if can_encode_exr():
        # Linear 0.212 (0x36/255) is mid-grey (0.5) through the sRGB curve.
        made["exr"] = lavfi(folder / "linear.exr", "color=c=0x363636:size=32x32", "-pix_fmt", "gbrpf32le",
                            "-c:v", "exr")
    return made


def probe(data: bytes) -> dict:
    out = subprocess.run([tool("ffprobe"), "-v", "error", "-print_format", "json", "-show_streams", "-i", "-"],
                         input=data, capture_output=True, check=True, timeout=60).stdout
    return json.loads(out)["streams"][0]


def mean_grey(data: bytes) -> float:
    raw = subprocess.run([tool("ffmpeg"), "-v", "error", "-f", "image2pipe", "-i", "-", "-f", "rawvideo",
                          "-pix_fmt", "gray", "-"], input=data, capture_output=True, check=True, timeout=60).stdout
    return sum(raw) / len(raw)


def fake(tmp_path, name, body):
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


# --- one image ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["png", "png16", "tiff"])
def test_an_image_becomes_a_jpeg_of_the_same_size(images, kind):
    made = preview.make_preview(images[kind], tool("ffmpeg"))
    assert made and made.content_type == "image/jpeg" and made.converted and made.path == images[kind]
    stream = probe(made.data)
    size = (256, 256) if kind == "png16" else (64, 48)
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("mjpeg", *size)


def test_an_exr_becomes_a_jpeg_through_the_srgb_curve(images):
    if "exr" not in images:
        pytest.skip("this FFmpeg has no EXR encoder to make the test image with (ffmpeg -encoders)")
    made = preview.make_preview(images["exr"], tool("ffmpeg"))
    assert made and made.content_type == "image/jpeg"
    # Linear 0.212 shown as is would be ~54 of 255; through the sRGB curve it is ~128.
    assert 115 <= mean_grey(made.data) <= 140


def test_a_jpeg_under_the_limit_goes_as_it_is(images):
    made = preview.make_preview(images["jpeg"], tool("ffmpeg"))
    with open(images["jpeg"], "rb") as f:
        assert (made.data, made.content_type, made.converted) == (f.read(), "image/jpeg", False)


def test_a_png_over_the_limit_is_sent_as_a_jpeg_under_it(images):
    size = os.path.getsize(images["png16"])
    made = preview.make_preview(images["png16"], tool("ffmpeg"), limit=size - 1)
    assert made and made.content_type == "image/jpeg" and len(made.data) < size - 1


def test_without_ffmpeg_png_and_jpeg_under_the_limit_go_as_they_are_others_are_skipped(images):
    png = preview.make_preview(images["png"], None)
    with open(images["png"], "rb") as f:
        assert (png.data, png.content_type, png.converted) == (f.read(), "image/png", False)
    size = os.path.getsize(images["png16"])
    over = preview.make_preview(images["png16"], None, limit=size - 1)
    assert not over and over.reason == (f"{size} bytes, over the {size - 1}-byte limit, "
                                        f"and no FFmpeg to make a JPEG of it")
    tiff = preview.make_preview(images["tiff"], None)
    assert not tiff and tiff.reason == "neither PNG nor JPEG, and no FFmpeg to convert it"


def test_a_jpeg_still_over_the_limit_is_no_preview(images):
    made = preview.make_preview(images["png16"], tool("ffmpeg"), limit=1000)
    assert not made and made.reason.startswith("its JPEG is ") and made.reason.endswith("over the 1000-byte limit")


def test_what_ffmpeg_cannot_decode_is_no_preview_with_its_words(tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all" * 10)
    made = preview.make_preview(str(junk), tool("ffmpeg"))
    assert not made and made.reason.startswith("FFmpeg cannot convert it (exit code ")
    assert "Invalid PNG signature" in made.reason  # FFmpeg's own words on the cause


def test_a_missing_file_is_no_preview(tmp_path):
    made = preview.make_preview(str(tmp_path / "gone.png"), tool("ffmpeg"))
    assert not made and made.reason == "cannot be read: No such file or directory"


def test_an_ffmpeg_that_hangs_is_stopped_after_the_timeout(tmp_path, images):
    marker = tmp_path / "pid"
    hangs = fake(tmp_path, "ffmpeg", f"echo $$ > {marker}; exec sleep 300")
    made = preview.make_preview(images["tiff"], hangs, timeout=0.5)
    assert not made and made.reason == "FFmpeg took more than 0.5 s to convert it; stopped it"
    pid = int(marker.read_text())
    assert not os.path.exists(f"/proc/{pid}") or pathlib.Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def test_the_hub_runs_while_ffmpeg_converts(tmp_path, images):
    slow = fake(tmp_path, "ffmpeg", f'sleep 0.5; exec {tool("ffmpeg")} "$@"')
    ticks = []
    ticker = gevent.spawn(lambda: [ticks.append(gevent.sleep(0.05)) for _ in range(1000)])
    try:
        made = preview.make_preview(images["png"], slow)
    finally:
        ticker.kill()
    assert made and len(ticks) >= 3, "the event loop was blocked during the conversion"


@pytest.mark.slow
def test_a_4k_16_bit_png_over_25_mib_becomes_a_jpeg_under_it(tmp_path):
    big = lavfi(tmp_path / "4k.png", "testsrc2=size=3840x2160", "-vf", "noise=alls=60:allf=t", "-pix_fmt", "rgb48be")
    assert os.path.getsize(big) > preview.MAX_PREVIEW_BYTES, "the noise no longer makes the PNG big enough"
    assert not preview.make_preview(big, None)
    made = preview.make_preview(big, tool("ffmpeg"))
    assert made and len(made.data) < preview.MAX_PREVIEW_BYTES
    stream = probe(made.data)
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("mjpeg", 3840, 2160)


# --- the uploader ---------------------------------------------------------------------------------


class Manager:
    """Records what send() was given; answers from ``answers`` (a status, or an
    exception to raise), then 204."""

    def __init__(self, *answers):
        self.calls = []
        self.times = []
        self.answers = list(answers)

    def send(self, data: bytes, content_type: str) -> int:
        self.calls.append((data, content_type))
        self.times.append(time.monotonic())
        answer = self.answers.pop(0) if self.answers else 204
        if isinstance(answer, BaseException):
            raise answer
        return answer


@pytest.fixture
def uploaders():
    made = []

    def make(send, ffmpeg=None, interval=0.0, **kwargs):
        made.append(preview.PreviewUploader(send, ffmpeg, interval, **kwargs).start())
        return made[-1]

    yield make
    for uploader in made:
        uploader.stop()


@pytest.fixture
def pngs(tmp_path):
    """Five distinct PNG files (no FFmpeg needed: sent as they are)."""
    paths = []
    for i in range(5):
        path = tmp_path / f"frame-{i}.png"
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes([i]) * 100)
        paths.append(str(path))
    return paths


def data_of(path):
    with open(path, "rb") as f:
        return f.read()


def test_a_preview_is_sent_converted_when_ffmpeg_is_there(uploaders, images):
    manager = Manager()
    uploader = uploaders(manager.send, tool("ffmpeg"))
    uploader.offer(images["png"])
    wait_until(lambda: manager.calls)
    assert manager.calls[0][1] == "image/jpeg" and probe(manager.calls[0][0])["codec_name"] == "mjpeg"
    assert uploader.sent == 1


def test_throttled_and_only_the_newest_waiting_image_is_sent(uploaders, pngs):
    manager = Manager()
    uploader = uploaders(manager.send, interval=0.5)
    offered = time.monotonic()
    uploader.offer(pngs[0])
    wait_until(lambda: manager.calls)
    for path in pngs[1:4]:
        uploader.offer(path)  # within the interval: each replaces the one before
    assert uploader.waiting == pngs[3] and len(manager.calls) == 1
    wait_until(lambda: len(manager.calls) == 2)
    assert [data for data, _ in manager.calls] == [data_of(pngs[0]), data_of(pngs[3])]
    assert uploader.waiting is None and uploader.sent == 2
    # The throttle is the behaviour here: the second upload starts at least an interval
    # after the first one started, which was after it was offered (a slow machine only
    # makes the gap longer; measured from the first send it could look shorter, when
    # preparing the first image took longer than preparing the second).
    assert manager.times[1] - offered >= 0.5


@pytest.mark.parametrize("status", [429, 413, 400, 500])
def test_a_refused_image_is_dropped_and_never_sent_again(uploaders, pngs, status, caplog):
    caplog.set_level(logging.INFO, logger="fworker.preview")
    manager = Manager(status)
    uploader = uploaders(manager.send)
    uploader.offer(pngs[0])
    wait_until(lambda: uploader.dropped == 1)
    uploader.offer(pngs[1])
    wait_until(lambda: uploader.sent == 1)
    assert [data for data, _ in manager.calls] == [data_of(pngs[0]), data_of(pngs[1])]
    assert any(str(status) in r.getMessage() and pngs[0] in r.getMessage() for r in caplog.records)


def test_a_network_error_drops_the_image_quietly(uploaders, pngs, caplog):
    caplog.set_level(logging.INFO, logger="fworker.preview")
    manager = Manager(RetryLater("connection refused"))
    uploader = uploaders(manager.send)
    uploader.offer(pngs[0])
    wait_until(lambda: uploader.dropped == 1)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, f"preview {pngs[0]} not sent, not retried: connection refused")]
    uploader.offer(pngs[1])
    wait_until(lambda: uploader.sent == 1)
    assert len(manager.calls) == 2


def test_a_bug_in_send_does_not_end_the_uploader(uploaders, pngs, caplog):
    manager = Manager(KeyError("oops"))
    uploader = uploaders(manager.send)
    uploader.offer(pngs[0])
    wait_until(lambda: uploader.dropped == 1)
    assert "preview upload failed unexpectedly" in caplog.text and "KeyError" in caplog.text
    uploader.offer(pngs[1])
    wait_until(lambda: uploader.sent == 1)


def test_without_ffmpeg_an_exr_is_skipped_with_a_debug_line(uploaders, images, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="fworker.preview")
    exr = tmp_path / "render.exr"
    exr.write_bytes(b"\x76\x2f\x31\x01" + b"\0" * 100)
    manager = Manager()
    uploader = uploaders(manager.send)
    uploader.offer(str(exr))
    wait_until(lambda: uploader.dropped == 1)
    assert manager.calls == []
    assert [(r.levelno, r.getMessage()) for r in caplog.records if "render.exr" in r.getMessage()] == [
        (logging.DEBUG, f"no preview of {exr}: neither PNG nor JPEG, and no FFmpeg to convert it")]


def test_stop_ends_a_conversion_under_way_and_later_offers_are_ignored(uploaders, tmp_path, images):
    marker = tmp_path / "pid"
    hangs = fake(tmp_path, "ffmpeg", f"echo $$ > {marker}; exec sleep 300")
    manager = Manager()
    uploader = uploaders(manager.send, hangs)
    uploader.offer(images["tiff"])
    wait_until(marker.exists)
    pid = int(wait_until(lambda: marker.read_text().strip()))
    uploader.stop()
    assert uploader._greenlet.dead
    assert not os.path.exists(f"/proc/{pid}") or pathlib.Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    uploader.offer(images["png"])  # never raises, never sends
    assert uploader.waiting is None and manager.calls == []


def test_stop_while_waiting_for_the_interval_returns_at_once(uploaders, pngs):
    manager = Manager()
    uploader = uploaders(manager.send, interval=300)
    uploader.offer(pngs[0])
    wait_until(lambda: manager.calls)
    uploader.offer(pngs[1])
    stopping = gevent.spawn(uploader.stop)
    wait_until(lambda: stopping.dead, timeout=10, what="stop() while throttled")
    assert len(manager.calls) == 1
