"""Blender script: the weighted average of two EXR images (or sequences).

Run by the worker as
    blender --background --factory-startup -noaudio --python-exit-code 42 \
        --python merge_exr.py -- --input1=A --input2=B --output=OUT \
        --weight1=W1 --weight2=W2 [--frame-start=S --frame-end=E]

With a frame range, the last run of ``#`` in each path is replaced by the
zero-padded frame number.  The averaging is done by the compositor (C code,
no numpy needed: Debian's Blender has none): RGB through a Mix node, alpha
through two Math nodes, joined with Set Alpha.  Each result is written to a
temporary file in the output folder and then renamed, so a reader never sees
half an image.  Each finished file is announced as ``fworker: produced '<path>'``
(Blender's own ``Saved:`` line names the temporary file).
"""
import argparse
import os
import re
import sys
import tempfile

import bpy

UMASK = os.umask(0o022)
os.umask(UMASK)


def parse_args():
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    parser = argparse.ArgumentParser(prog="merge_exr.py")
    parser.add_argument("--input1", required=True)
    parser.add_argument("--input2", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--weight1", type=float, required=True)
    parser.add_argument("--weight2", type=float, required=True)
    parser.add_argument("--frame-start", type=int)
    parser.add_argument("--frame-end", type=int)
    return parser.parse_args(argv)


def frame_path(pattern, frame):
    """Replace the last run of '#' with the zero-padded frame number."""
    runs = list(re.finditer(r"#+", pattern))
    if not runs:
        raise RuntimeError(f"path has no '#' for the frame number: {pattern!r}")
    last = runs[-1]
    return pattern[:last.start()] + str(frame).zfill(len(last.group())) + pattern[last.end():]


def build_scene(weight1, weight2):
    scene = bpy.data.scenes.new("fworker-merge")
    scene.use_nodes = True
    tree = scene.node_tree
    for node in list(tree.nodes):
        tree.nodes.remove(node)
    factor = weight2 / (weight1 + weight2)
    nodes = tree.nodes
    image1 = nodes.new("CompositorNodeImage")
    image2 = nodes.new("CompositorNodeImage")
    mix = nodes.new("CompositorNodeMixRGB")
    mix.blend_type = "MIX"
    mix.use_alpha = False  # alpha is averaged separately below
    mix.inputs[0].default_value = factor
    alpha1 = nodes.new("CompositorNodeMath")
    alpha1.operation = "MULTIPLY"
    alpha1.inputs[1].default_value = 1.0 - factor
    alpha2 = nodes.new("CompositorNodeMath")
    alpha2.operation = "MULTIPLY_ADD"
    alpha2.inputs[1].default_value = factor
    set_alpha = nodes.new("CompositorNodeSetAlpha")
    set_alpha.mode = "REPLACE_ALPHA"  # the colours are premultiplied already
    composite = nodes.new("CompositorNodeComposite")
    composite.use_alpha = True
    links = tree.links
    links.new(image1.outputs["Image"], mix.inputs[1])
    links.new(image2.outputs["Image"], mix.inputs[2])
    links.new(image1.outputs["Alpha"], alpha1.inputs[0])
    links.new(image2.outputs["Alpha"], alpha2.inputs[0])
    links.new(alpha1.outputs[0], alpha2.inputs[2])
    links.new(mix.outputs[0], set_alpha.inputs["Image"])
    links.new(alpha2.outputs[0], set_alpha.inputs["Alpha"])
    links.new(set_alpha.outputs[0], composite.inputs["Image"])
    render = scene.render
    render.resolution_percentage = 100
    render.use_file_extension = False
    render.image_settings.file_format = "OPEN_EXR"
    render.image_settings.color_mode = "RGBA"
    render.image_settings.color_depth = "32"
    render.image_settings.exr_codec = "ZIP"
    return scene, image1, image2


def load(path):
    if not os.path.isfile(path):
        raise RuntimeError(f"input image does not exist: {path!r}")
    return bpy.data.images.load(path, check_existing=False)


def merge_one(scene, node1, node2, input1, input2, output):
    img1, img2 = load(input1), load(input2)
    if tuple(img1.size) != tuple(img2.size):
        raise RuntimeError(f"images differ in size: {input1!r} is {tuple(img1.size)}, "
                           f"{input2!r} is {tuple(img2.size)}")
    node1.image, node2.image = img1, img2
    scene.render.resolution_x, scene.render.resolution_y = img1.size
    out_dir = os.path.dirname(os.path.abspath(output))
    fd, tmp = tempfile.mkstemp(prefix=".merge-", suffix=".exr", dir=out_dir)
    os.close(fd)
    try:
        scene.render.filepath = tmp
        bpy.ops.render.render(write_still=True, scene=scene.name)
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp made it private; the result is not
        os.replace(tmp, output)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    bpy.data.images.remove(img1)
    bpy.data.images.remove(img2)
    print(f"fworker: produced '{output}'", flush=True)


def main():
    args = parse_args()
    if args.weight1 < 0 or args.weight2 < 0 or args.weight1 + args.weight2 <= 0:
        raise RuntimeError(f"weights must be >= 0 with a positive sum, not {args.weight1}, {args.weight2}")
    scene, node1, node2 = build_scene(args.weight1, args.weight2)
    if args.frame_start is None:
        merge_one(scene, node1, node2, args.input1, args.input2, args.output)
        return
    for frame in range(args.frame_start, args.frame_end + 1):
        merge_one(scene, node1, node2, frame_path(args.input1, frame),
                  frame_path(args.input2, frame), frame_path(args.output, frame))


main()
