"""Blender script: the scene's sound mixdown to a FLAC file.

Run by the worker as
    blender --enable-autoexec --background --factory-startup -noaudio <file.blend> \
        --python-exit-code 42 --python audio_mixdown.py -- \
        --output=OUT.flac [--frame-start=S] [--frame-end=E]

The mixdown covers the scene's frame range, or the given one.  It is written
to a temporary file in the output folder and then renamed, so a reader never
sees half a file, and announced as ``fworker: produced '<path>'``.
"""
import argparse
import os
import sys
import tempfile

import bpy

UMASK = os.umask(0o022)
os.umask(UMASK)


def parse_args():
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    parser = argparse.ArgumentParser(prog="audio_mixdown.py")
    parser.add_argument("--output", required=True)
    parser.add_argument("--frame-start", type=int)
    parser.add_argument("--frame-end", type=int)
    return parser.parse_args(argv)


def main():
    args = parse_args()
    scene = bpy.context.scene
    if args.frame_start is not None:
        scene.frame_start = args.frame_start
    if args.frame_end is not None:
        scene.frame_end = args.frame_end
    if scene.frame_end < scene.frame_start:
        raise RuntimeError(f"empty frame range {scene.frame_start}..{scene.frame_end}")
    print(f"Mixing down frames {scene.frame_start}..{scene.frame_end} of scene {scene.name!r}", flush=True)
    out_dir = os.path.dirname(os.path.abspath(args.output))
    fd, tmp = tempfile.mkstemp(prefix=".mixdown-", suffix=".flac", dir=out_dir)
    os.close(fd)
    try:
        result = bpy.ops.sound.mixdown(filepath=tmp, check_existing=False, relative_path=False,
                                       container="FLAC", codec="FLAC", format="S16")
        if "FINISHED" not in result or os.path.getsize(tmp) == 0:
            raise RuntimeError(f"the mixdown wrote nothing (operator result {sorted(result)})")
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp made it private; the result is not
        os.replace(tmp, args.output)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    print(f"fworker: produced '{args.output}'", flush=True)


main()
