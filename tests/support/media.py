"""Tiny test media and helpers for the Blender and FFmpeg tests (the session fixture
``blender_media`` in tests/conftest.py makes the Blender media once).

Blender and FFmpeg must be installed: without them these tests fail (never
skip), so a CI machine that lost them cannot pass by accident.
"""
import dataclasses
import json
import os
import shutil
import struct
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name!r} is not on PATH: the Blender/FFmpeg command tests need it "
                    f"(Debian: apt-get install --no-install-recommends blender ffmpeg)", pytrace=False)
    return path


def run(args, timeout=60):
    """Run a helper tool for the tests (not through the worker) and return stdout."""
    proc = subprocess.run(args, capture_output=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"{args!r} failed with {proc.returncode}: {proc.stderr.decode(errors='replace')[-2000:]}")
    return proc.stdout


def ffprobe(path: str, *, count_frames: bool = False) -> dict:
    args = [tool("ffprobe"), "-v", "error", "-print_format", "json", "-show_streams", "-show_format"]
    if count_frames:
        args.append("-count_frames")
    return json.loads(run(args + [path]))


def first_pixel(path: str) -> tuple[float, float, float, float]:
    """RGBA of an image's first pixel as float, read by FFmpeg (planar G, B, R, A)."""
    raw = run([tool("ffmpeg"), "-v", "error", "-nostdin", "-i", path, "-f", "rawvideo",
               "-pix_fmt", "gbrapf32le", "-"])
    plane = len(raw) // 4
    g, b, r, a = (struct.unpack_from("<f", raw, i * plane)[0] for i in range(4))
    return r, g, b, a


def make_wav(path: str, seconds: float = 1.0) -> str:
    run([tool("ffmpeg"), "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
         f"sine=frequency=440:duration={seconds}", "-ac", "2", path])
    return path


def make_frames(folder: str, count: int = 5, size: str = "65x37") -> list[str]:
    """PNG frames of an odd size (libx264 needs the padding of create_video)."""
    os.makedirs(folder, exist_ok=True)
    run([tool("ffmpeg"), "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", f"testsrc=size={size}:rate=10",
         "-frames:v", str(count), os.path.join(folder, "frame_%04d.png")])
    return sorted(os.path.join(folder, name) for name in os.listdir(folder))


@dataclasses.dataclass(frozen=True)
class BlenderMedia:
    folder: str
    blend: str  # Cycles, 64x36, 4 samples, no denoising, frames 1-3
    audio_blend: str  # 12 frames at 24 fps with a 1 s tone
    flat_a: str  # 8x6 EXR, RGBA 0.2 0.4 0.6 1.0
    flat_b: str  # 8x6 EXR, RGBA 1.0 0.0 0.5 0.5
    chunk_a: str  # frame_####.exr, frames 1-2, like flat_a
    chunk_b: str
    exr_seq: str  # folder of shot_0007..0009.exr, 20x10


def make_blender_media(parent) -> BlenderMedia:
    """The media, in a new folder under ``parent``, with one Blender run (start-up costs ~1.2 s)."""
    blender = tool("blender")
    folder = os.path.join(str(parent), "média files")
    os.makedirs(folder)
    wav = make_wav(os.path.join(folder, "tone ü.wav"))
    out = run([blender, "--background", "--factory-startup", "-noaudio", "--python-exit-code", "42",
               "--python", os.path.join(HERE, "blender_media_script.py"), "--", folder, wav], timeout=120)
    assert b"MEDIA DONE" in out, out.decode(errors="replace")
    join = os.path.join
    return BlenderMedia(folder, join(folder, "tiny scène.blend"), join(folder, "audio scène.blend"),
                        join(folder, "flat a.exr"), join(folder, "flat b.exr"),
                        join(folder, "chunk a", "frame_####.exr"), join(folder, "chunk b", "frame_####.exr"),
                        join(folder, "exr seq"))
