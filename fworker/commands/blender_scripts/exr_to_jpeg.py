"""Blender script: an EXR image sequence to JPEG previews, via the sequencer.

Run by the worker as
    blender --background --factory-startup -noaudio <file.blend> \
        --python-exit-code 42 --python exr_to_jpeg.py -- \
        --exr-glob=GLOB --output-pattern=NAME --quality=90

The images matching GLOB (sorted by name, all in one folder) become one image
strip in a new scene; the JPEGs are written beside them, named by
``--output-pattern`` whose ``#`` run is the frame number.  Frame numbers start
at the trailing number of the first image's name (1 when it has none) and
count up one per image.  The .blend's own scene lends its colour management
(view transform, look, exposure, gamma), so the previews look like the
renders do in the artist's Blender.
"""
import argparse
import glob
import os
import re
import sys

import bpy


def parse_args():
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    parser = argparse.ArgumentParser(prog="exr_to_jpeg.py")
    parser.add_argument("--exr-glob", required=True)
    parser.add_argument("--output-pattern", required=True)
    parser.add_argument("--quality", type=int, default=90)
    return parser.parse_args(argv)


def first_frame_number(path):
    match = re.search(r"(\d+)\D*$", os.path.basename(path))
    return int(match.group(1)) if match else 1


def copy_colour_management(source, target):
    target.display_settings.display_device = source.display_settings.display_device
    view, src_view = target.view_settings, source.view_settings
    view.view_transform = src_view.view_transform
    view.look = src_view.look
    view.exposure = src_view.exposure
    view.gamma = src_view.gamma


def build_scene(files, output_pattern, quality):
    folder = os.path.dirname(files[0])
    source_scene = bpy.context.scene
    scene = bpy.data.scenes.new("fworker-exr-to-jpeg")
    copy_colour_management(source_scene, scene)
    start = first_frame_number(files[0])
    editor = scene.sequence_editor_create()
    strip = editor.sequences.new_image("exr", files[0], 1, start)
    for path in files[1:]:
        strip.elements.append(os.path.basename(path))
    probe = bpy.data.images.load(files[0], check_existing=False)
    width, height = probe.size
    bpy.data.images.remove(probe)
    if width == 0 or height == 0:
        raise RuntimeError(f"cannot read the image size of {files[0]!r}")
    scene.frame_start = start
    scene.frame_end = start + len(files) - 1
    render = scene.render
    render.resolution_x, render.resolution_y = width, height
    render.resolution_percentage = 100
    render.use_sequencer = True
    render.use_file_extension = False  # the pattern names the file exactly
    render.image_settings.file_format = "JPEG"
    render.image_settings.color_mode = "RGB"
    render.image_settings.quality = quality
    render.filepath = os.path.join(folder, output_pattern)
    return scene


def main():
    args = parse_args()
    files = sorted(glob.glob(args.exr_glob))
    if not files:
        raise RuntimeError(f"no files match {args.exr_glob!r}")
    folders = {os.path.dirname(path) for path in files}
    if len(folders) > 1:
        raise RuntimeError(f"the images must be in one folder, {args.exr_glob!r} matches {len(folders)}")
    scene = build_scene(files, args.output_pattern, args.quality)
    bpy.ops.render.render(animation=True, scene=scene.name)


main()
