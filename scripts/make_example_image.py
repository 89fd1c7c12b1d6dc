"""Render the bundled example image (examples/suzanne.png) with Blender: Suzanne on a transparent film.

Run with the bpy environment: .venv-blender/bin/python scripts/make_example_image.py
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import bpy


def main(out: Path) -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    bpy.ops.mesh.primitive_monkey_add(size=2.0, rotation=(0.0, 0.0, 0.0))
    monkey = bpy.context.active_object
    monkey.rotation_euler = (math.radians(-10), 0.0, math.radians(-20))
    monkey.modifiers.new("subsurf", "SUBSURF").levels = 2
    bpy.ops.object.shade_smooth()
    mat = bpy.data.materials.new("clay")
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (0.8, 0.45, 0.25, 1.0)
    bsdf.inputs["Roughness"].default_value = 0.55
    monkey.data.materials.append(mat)
    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    cam.location = (0.0, -7.0, 0.0)
    cam.rotation_euler = (math.radians(90), 0.0, 0.0)
    cam.data.lens = 70
    scene.collection.objects.link(cam)
    scene.camera = cam
    sun = bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN"))
    sun.data.energy = 4.0
    sun.rotation_euler = (math.radians(50), math.radians(-30), math.radians(-20))
    scene.collection.objects.link(sun)
    world = bpy.data.worlds.new("world")
    world.color = (0.4, 0.4, 0.45)
    scene.world = world
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 32
    scene.render.film_transparent = True
    scene.render.resolution_x = scene.render.resolution_y = 512
    scene.render.image_settings.color_mode = "RGBA"
    scene.render.filepath = str(out)
    bpy.ops.render.render(write_still=True)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "examples/suzanne.png").resolve())
