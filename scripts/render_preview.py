"""Render a preview PNG of one object with Cycles on the CPU (works headless, no GPU or display).

Used by scripts/demo.py and for the README's pictures. Import inside a Blender session (bpy).
"""

from __future__ import annotations

import math
from pathlib import Path

import bpy
from mathutils import Vector


def render_preview(obj: bpy.types.Object, out: Path, size: int = 640, samples: int = 24,
                   azimuth_deg: float = -30.0, elevation_deg: float = 15.0, denoise: bool = False) -> Path:
    """Render ``obj`` from the front-left with a key light and soft world light; return the PNG path.

    ``denoise`` runs Cycles' denoiser (smaller PNGs for the README; off by default, as the demo renders)."""
    scene = bpy.context.scene
    centre, radius = _bounds(obj)
    cam = _camera(scene, centre, radius, azimuth_deg, elevation_deg)
    _lights(scene)
    scene.camera = cam
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = denoise
    scene.render.film_transparent = False
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.render.image_settings.file_format = "PNG"
    scene.render.filepath = str(out)
    bpy.ops.render.render(write_still=True)
    return out


def _bounds(obj: bpy.types.Object) -> tuple[Vector, float]:
    corners = [obj.matrix_world @ Vector(c) for c in obj.bound_box]
    lo = Vector(tuple(min(c[i] for c in corners) for i in range(3)))
    hi = Vector(tuple(max(c[i] for c in corners) for i in range(3)))
    return (lo + hi) / 2, max((hi - lo).length / 2, 1e-3)


def _camera(scene: bpy.types.Scene, centre: Vector, radius: float, az: float, el: float) -> bpy.types.Object:
    data = bpy.data.cameras.new("hi3dgen_preview_cam")
    data.lens = 50
    cam = bpy.data.objects.new("hi3dgen_preview_cam", data)
    scene.collection.objects.link(cam)
    a, e = math.radians(az), math.radians(el)
    direction = Vector((math.sin(a) * math.cos(e), -math.cos(a) * math.cos(e), math.sin(e)))  # from -Y
    distance = radius / math.tan(math.atan(18 / data.lens)) * 1.15  # 36 mm sensor: fit the bounding sphere
    cam.location = centre + direction * distance
    cam.rotation_euler = (-direction).to_track_quat("-Z", "Y").to_euler()
    return cam


def _lights(scene: bpy.types.Scene) -> None:
    key = bpy.data.objects.new("hi3dgen_preview_key", bpy.data.lights.new("hi3dgen_preview_key", "SUN"))
    key.data.energy = 3.5
    key.rotation_euler = (math.radians(55), 0.0, math.radians(-35))
    scene.collection.objects.link(key)
    world = bpy.data.worlds.new("hi3dgen_preview_world")
    world.color = (0.35, 0.37, 0.42)
    scene.world = world
