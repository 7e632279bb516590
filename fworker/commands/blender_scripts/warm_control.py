"""Blender script: keep the loaded .blend and render one task after another (fworker.warmblender).

Run by the worker as
    <blender_cmd> --enable-autoexec -noaudio --background <file.blend> \
        --python warm_control.py

that is, the same start as a fresh render, with this script in place of the render
arguments.  It talks over stdin (one JSON request a line) and stdout: every reply is one
line ``<FWORKER_WARM_TOKEN> <json>``, after everything Blender printed before it (C and
Python buffers are flushed first), so the worker knows a task's output is complete.

A render request does what the command line would have done, in its order:
``--python-expr`` (only plain render flags, checked by the worker), ``--render-output``,
``--render-format``, ``--render-frame``; then it puts back every property it saved
before, so the next task sees the scene as loaded.  Replies: ``ready`` (after the load,
with the files the scene reads), ``done`` (``status`` as Blender's exit code would have
been), ``declined`` (the request cannot be done exactly as a fresh Blender would: the
worker runs a fresh one), ``error``.
"""
import ctypes
import json
import os
import sys

import bpy

TOKEN = os.environ.get("FWORKER_WARM_TOKEN", "")
_LIBC = ctypes.CDLL(None)

# Blender's -F names that differ from the Python enum's.
CLI_FORMATS = {"EXR": "OPEN_EXR", "MULTILAYER": "OPEN_EXR_MULTILAYER", "TGA": "TARGA",
               "RAWTGA": "TARGA_RAW", "JP2": "JPEG2000"}
MOVIE_FORMATS = {"FFMPEG", "AVI_JPEG", "AVI_RAW"}
FLAGS = ("use_file_extension", "use_overwrite", "use_placeholder")
MINFRAME, MAXFRAME = 0, 1048574  # Blender's MINAFRA..MAXFRAME for --render-frame


def reply(kind, **fields):
    sys.stdout.flush()
    _LIBC.fflush(None)  # Blender's own printf output first
    line = f"{TOKEN} {json.dumps(dict(fields, kind=kind))}\n"
    os.write(1, line.encode())


def snapshot(struct):
    """The plain writable properties of an RNA struct, to put back after a task."""
    values = {}
    for prop in struct.bl_rna.properties:
        if prop.is_readonly or prop.type in ("POINTER", "COLLECTION") or prop.identifier == "rna_type":
            continue
        values[prop.identifier] = getattr(struct, prop.identifier)
    return values


def restore(struct, values):
    for name, value in values.items():
        if getattr(struct, name) != value:
            try:
                setattr(struct, name, value)
            except (AttributeError, TypeError, ValueError):
                continue  # e.g. an enum item no longer offered after another change: set again below
    for name, value in values.items():  # a second pass for properties that depend on others
        if getattr(struct, name) != value:
            setattr(struct, name, value)


# What a task may change (only these): put back after it.  Not every property of the
# scene: reading some prints warnings (Cycles' denoiser in a build without OIDN).
SCENE_PROPS = ("frame_start", "frame_end", "frame_step", "frame_current")
RENDER_PROPS = ("filepath", "engine") + FLAGS


def snapshot_task_state(scene):
    render = scene.render
    return [(scene, {name: getattr(scene, name) for name in SCENE_PROPS}),
            (render, {name: getattr(render, name) for name in RENDER_PROPS}),
            (render.image_settings, snapshot(render.image_settings))]


def dependencies():
    """Every file outside the .blend that the loaded data reads, made absolute."""
    paths = bpy.utils.blend_paths(absolute=True, packed=False, local=False)
    return sorted({os.path.abspath(bpy.path.abspath(p)) for p in paths if p})


def frames_of(spec, scene):
    """--render-frame's list: '5', '1..10', '+1' (after the start), '-1' (before the end)."""
    def number(text):
        if text.startswith("+"):
            value = scene.frame_start + int(text[1:])
        elif text.startswith("-"):
            value = scene.frame_end - int(text[1:])
        else:
            value = int(text)
        return max(MINFRAME, min(MAXFRAME, value))
    ranges = []
    for part in spec.replace(" ", "").split(","):
        first, _, last = part.partition("..")
        ranges.append((number(first), number(last or first)))
    return ranges


def unsafe_reason():
    """Why the loaded file cannot be kept for another task, or ''."""
    scripts = [text.name for text in bpy.data.texts if text.use_module]
    if scripts:
        return f"it registers Python scripts on load ({', '.join(scripts[:3])})"
    return ""


class Declined(Exception):
    """The request cannot be done exactly as a fresh Blender would do it."""


def render(request):
    scene = bpy.context.scene
    saved = snapshot_task_state(scene)
    try:
        return run_ops(scene, request.get("ops", []))
    finally:
        for struct, values in saved:
            restore(struct, values)


def run_ops(scene, ops):
    """The task's options, in the order a fresh Blender would apply them."""
    render_settings = scene.render
    for kind, value in ops:
        if kind == "flags":
            for name, flag in value.items():
                if name not in FLAGS:
                    return {"kind": "declined", "why": f"unknown render flag {name}"}
                setattr(render_settings, name, bool(flag))
        elif kind == "output":
            render_settings.filepath = value
        elif kind == "format":
            why = set_format(render_settings.image_settings, value)
            if why:
                return {"kind": "declined", "why": why}
        elif kind == "engine":
            if value not in {item.identifier for item in render_settings.bl_rna.properties["engine"].enum_items}:
                return {"kind": "declined", "why": f"engine {value} is not one of this Blender's"}
            render_settings.engine = value
        elif kind == "scene":
            if value != scene.name:  # another scene: the context would change for later tasks
                return {"kind": "declined", "why": f"--scene {value} is not the active scene"}
            print(f"Scene switch for render: '{value}' in file: '{bpy.data.filepath}'", flush=True)
        elif kind == "frames":
            status = render_frames(scene, value)
            if status:
                return {"kind": "done", "status": status}
        else:
            return {"kind": "declined", "why": f"unknown option {kind}"}
    return {"kind": "done", "status": 0}


def reads_frame_range():
    """Whether a driver reads the scene's frame range: rendering a task's frames here sets
    that range (a fresh Blender's --render-frame leaves it), so such a driver would differ."""
    for collection in (bpy.data.objects, bpy.data.meshes, bpy.data.materials, bpy.data.scenes,
                       bpy.data.node_groups, bpy.data.shape_keys, bpy.data.cameras, bpy.data.lights,
                       bpy.data.worlds):
        for datablock in collection:
            animation = getattr(datablock, "animation_data", None)
            for fcurve in (animation.drivers if animation else ()):
                texts = [fcurve.driver.expression] + [target.data_path for variable in fcurve.driver.variables
                                                      for target in variable.targets]
                if any("frame_start" in t or "frame_end" in t or "frame_step" in t for t in texts):
                    return True
    return False


RANGE_DRIVERS = reads_frame_range()


def render_frames(scene, spec):
    if scene.render.image_settings.file_format in MOVIE_FORMATS:
        raise Declined("movie output")
    if RANGE_DRIVERS:
        raise Declined("a driver reads the scene's frame range")
    for first, last in frames_of(spec, scene):
        if last < first:
            continue  # Blender renders nothing for a backwards range
        scene.frame_start, scene.frame_end = first, last
        try:
            bpy.ops.render.render(animation=True, scene=scene.name)
        except RuntimeError as ex:
            print(str(ex).strip(), flush=True)
            return 1
    return 0


def set_format(image_settings, cli_name):
    """-F sets only the format; the Python setter may also change depth or channels.
    Such a change would make other files than a fresh Blender: decline it."""
    name = CLI_FORMATS.get(cli_name, cli_name)
    before = (image_settings.color_depth, image_settings.color_mode)
    try:
        image_settings.file_format = name
    except TypeError:
        return f"format {cli_name} is not one of this Blender's"
    if (image_settings.color_depth, image_settings.color_mode) != before:
        return f"format {cli_name} changes the colour depth or mode of the file's own format"
    return ""


def main():
    reply("ready", filepath=bpy.data.filepath, dependencies=dependencies(), unsafe=unsafe_reason(),
          version=bpy.app.version_string)
    for raw in sys.stdin.buffer:
        request = json.loads(raw)
        if request.get("op") == "quit":
            break
        try:
            result = render(request)
        except Declined as ex:
            result = {"kind": "declined", "why": str(ex)}
        except Exception as ex:  # noqa: BLE001  (any error is reported to the worker, which stops this Blender)
            import traceback
            traceback.print_exc()
            sys.stdout.flush()
            result = {"kind": "error", "why": f"{type(ex).__name__}: {ex}"}
        reply(result.pop("kind"), **result)


main()
