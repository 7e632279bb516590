"""Run inside Blender by tests/support/media.py (not a test module): makes the tiny
test media.  Arguments after '--': the output folder and a WAV file."""
import os
import sys

import bpy

folder, wav = sys.argv[sys.argv.index("--") + 1:]

# A render scene: 64x36 pixels, Cycles with 4 samples, frames 1-3.  Denoising
# off: Debian's Blender has no OpenImageDenoise and would fail the render.
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.device = "CPU"
scene.cycles.samples = 4
scene.cycles.use_denoising = False
scene.render.resolution_x, scene.render.resolution_y = 64, 36
scene.render.resolution_percentage = 100
scene.frame_start, scene.frame_end = 1, 3
scene.render.image_settings.file_format = "PNG"
bpy.ops.wm.save_as_mainfile(filepath=os.path.join(folder, "tiny scène.blend"))

# The same with a sound strip, for the mixdown: 12 frames at 24 fps.
scene.frame_end = 12
scene.render.fps = 24
scene.sequence_editor_create().sequences.new_sound("tone", wav, 1, 1)
bpy.ops.wm.save_as_mainfile(filepath=os.path.join(folder, "audio scène.blend"))


def flat_exr(path, rgba, width=8, height=6):
    """A one-colour float EXR holding exactly these (linear, premultiplied) values."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = bpy.data.images.new("flat", width, height, alpha=True, float_buffer=True)
    image.pixels[:] = list(rgba) * (width * height)
    settings = bpy.context.scene.render.image_settings
    settings.file_format, settings.color_depth = "OPEN_EXR", "32"
    image.save_render(path, scene=bpy.context.scene)  # unlike image.save(): no colour transform
    bpy.data.images.remove(image)


for name, rgba in (("a", (0.2, 0.4, 0.6, 1.0)), ("b", (1.0, 0.0, 0.5, 0.5))):
    flat_exr(os.path.join(folder, f"flat {name}.exr"), rgba)
    for frame in (1, 2):
        flat_exr(os.path.join(folder, f"chunk {name}", f"frame_{frame:04d}.exr"), rgba)
for frame in (7, 8, 9):
    flat_exr(os.path.join(folder, "exr seq", f"shot_{frame:04d}.exr"), (0.1 * frame - 0.6, 0.5, 0.9, 1.0), 20, 10)
print("MEDIA DONE", flush=True)
