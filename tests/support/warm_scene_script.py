"""Run inside Blender by tests/test_warmblender.py and bench/b_warm.py (not a test module):
a tiny animated Cycles scene, saved twice (the cube moves the other way in the second).
Arguments after '--': the output folder, then optionally the size of a hidden mesh
(subdivision levels) and of a packed image (pixels a side), to make a slow-loading file."""
import os
import sys

import bpy

args = sys.argv[sys.argv.index("--") + 1:]
folder = args[0]
heavy_levels = int(args[1]) if len(args) > 1 else 0
image_side = int(args[2]) if len(args) > 2 else 0

scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.device = "CPU"
scene.cycles.samples = 4
scene.cycles.seed = 7
scene.cycles.use_animated_seed = False
scene.cycles.use_denoising = False  # Debian's Blender has no OpenImageDenoise
scene.render.resolution_x, scene.render.resolution_y = 48, 27
scene.render.resolution_percentage = 100
scene.frame_start, scene.frame_end = 1, 3
scene.render.image_settings.file_format = "PNG"
scene.render.filepath = "//default_####"

if heavy_levels:
    # Loaded with the file, never rendered: the load costs, the render does not.
    bpy.ops.mesh.primitive_ico_sphere_add(subdivisions=heavy_levels, location=(0, 0, -50))
    heavy = bpy.context.active_object
    heavy.name = "Heavy"
    heavy.hide_render = True
if image_side:
    image = bpy.data.images.new("Noise", image_side, image_side, alpha=False, float_buffer=True)
    image.generated_type = "COLOR_GRID"
    image.pack()
    image.use_fake_user = True

cube = scene.objects["Cube"]
for frame, x in ((1, -1.5), (3, 1.5)):
    cube.location.x = x
    cube.keyframe_insert("location", index=0, frame=frame)
bpy.ops.wm.save_as_mainfile(filepath=os.path.join(folder, "scene a.blend"))

for fcurve in cube.animation_data.action.fcurves:
    for point in fcurve.keyframe_points:
        point.co.y = -point.co.y
cube.data.materials.clear()
bpy.ops.wm.save_as_mainfile(filepath=os.path.join(folder, "scene b.blend"))
print("WARM SCENE DONE", flush=True)
