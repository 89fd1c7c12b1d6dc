"""RGB renders of one asset under varied material, lighting and background, through the cameras of its views.

Run by the bpy interpreter: ``python -m synthesis.blender.render_rgb --mesh M.npz --views V.npz --out O.npz
--seed S``. The cameras are the views' JSON, ``backend/camera.py``'s ``Camera.to_dict()``: its "blender" entry
holds the camera object's ``matrix_world`` and the camera data settings that reproduce it (the one camera
convention), so the renders line up with the rasterised normal maps and masks.
Writes ``rgb`` [K, H, W, 3] uint8 and ``alpha`` [K, H, W] uint8 to O.npz atomically.
"""

from __future__ import annotations

import argparse
import colorsys
import json
import tempfile
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from backend.atomic import write_atomic


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mesh", required=True)
    parser.add_argument("--views", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--samples", type=int, default=16)
    args = parser.parse_args(argv)
    with np.load(args.mesh, allow_pickle=False) as mesh, np.load(args.views, allow_pickle=False) as views:
        vertices, faces = mesh["vertices"], mesh["faces"]
        cameras = json.loads(views["cameras"].tobytes())
    rgb, alpha = render_views(vertices, faces, cameras, np.random.default_rng(args.seed), args.samples)

    def write(temp: Path) -> None:
        with open(temp, "wb") as f:
            np.savez(f, rgb=rgb, alpha=alpha)

    write_atomic(args.out, write)
    return 0


def render_views(vertices: np.ndarray, faces: np.ndarray, cameras: list[dict[str, Any]], rng: np.random.Generator,
                 samples: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """[K, H, W, 3] uint8 RGB on a random background and [K, H, W] uint8 alpha, one per camera."""
    scene = _empty_scene(samples)
    material = _add_mesh(scene, vertices, faces)
    camera = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
    scene.collection.objects.link(camera)
    scene.camera = camera
    lights = []
    for name in ("key", "fill"):
        light = bpy.data.objects.new(name, bpy.data.lights.new(name, "SUN"))
        scene.collection.objects.link(light)
        lights.append(light)
    rgbs, alphas = [], []
    for cam in cameras:
        _place_camera(camera, scene, cam)
        _vary(rng, material, lights, scene, np.array(cam["blender"]["matrix_world"])[:3, :3])
        rgba = _render(scene)  # [H, W, 4] float, top row first, straight alpha
        a = rgba[..., 3:]
        colour = rgba[..., :3] * a + _background(rng, *rgba.shape[:2]) * (1.0 - a)
        rgbs.append(np.round(np.clip(colour, 0, 1) * 255).astype(np.uint8))
        alphas.append(np.round(rgba[..., 3] * 255).astype(np.uint8))
    return np.stack(rgbs), np.stack(alphas)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """[H, W, 3] float: white or grey paper (most often) or a muted colour, with a soft vertical gradient."""
    kind = rng.random()
    if kind < 0.4:
        base = np.full(3, rng.uniform(0.85, 1.0))
    elif kind < 0.7:
        base = np.full(3, rng.uniform(0.25, 0.7))
    else:
        base = np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.15, 0.5), rng.uniform(0.35, 0.9)))
    ramp = np.linspace(1.0, 1.0 - rng.uniform(0.0, 0.25), h)[:, None, None]  # darker towards the bottom
    return np.clip(base * ramp, 0, 1) * np.ones((h, w, 1))


def _vary(rng: np.random.Generator, material: Any, lights: list[Any], scene: Any, camera_axes: np.ndarray) -> None:
    """A random plastic-to-metal material, a key and a fill light placed about the camera, and an ambient sky.

    ``camera_axes`` [3, 3]: the camera's right, up and backwards directions in the world, as columns.
    """
    bsdf = material.node_tree.nodes["Principled BSDF"]
    hue, sat, val = rng.random(), rng.uniform(0.0, 0.75), rng.uniform(0.25, 0.95)
    bsdf.inputs["Base Color"].default_value = (*colorsys.hsv_to_rgb(hue, sat, val), 1.0)
    bsdf.inputs["Roughness"].default_value = float(rng.uniform(0.2, 0.85))
    bsdf.inputs["Metallic"].default_value = float(rng.random() < 0.25)
    right, up, back = camera_axes.T
    key, fill = lights
    side = rng.choice([-1.0, 1.0])
    _aim(key, back + side * rng.uniform(0.3, 1.3) * right + rng.uniform(0.3, 1.3) * up)
    _aim(fill, back - side * rng.uniform(0.5, 1.5) * right + rng.uniform(-0.3, 0.5) * up)
    key.data.energy = float(rng.uniform(2.5, 5.0))
    fill.data.energy = float(key.data.energy * rng.uniform(0.15, 0.45))
    key.data.color = colorsys.hsv_to_rgb(rng.uniform(0.05, 0.15), rng.uniform(0.0, 0.2), 1.0)  # warm to white
    fill.data.color = colorsys.hsv_to_rgb(rng.uniform(0.5, 0.65), rng.uniform(0.0, 0.2), 1.0)  # cool to white
    key.data.angle = fill.data.angle = float(rng.uniform(0.05, 0.4))  # soft shadows
    scene.world.color = tuple(np.full(3, rng.uniform(0.15, 0.45)) * rng.uniform(0.9, 1.1, 3))  # ambient


def _aim(light: Any, towards: np.ndarray) -> None:
    """Point a sun so its light comes from the world direction ``towards`` (it shines along its local -Z)."""
    from mathutils import Vector

    light.rotation_mode = "QUATERNION"
    light.rotation_quaternion = Vector(tuple(towards / np.linalg.norm(towards))).to_track_quat("Z", "Y")


def _empty_scene(samples: int) -> Any:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    scene.render.film_transparent = True
    scene.render.resolution_percentage = 100
    scene.view_settings.view_transform = "Standard"
    scene.world = bpy.data.worlds.new("world")
    return scene


def _add_mesh(scene: Any, vertices: np.ndarray, faces: np.ndarray) -> Any:
    mesh = bpy.data.meshes.new("asset")
    mesh.vertices.add(len(vertices))
    mesh.vertices.foreach_set("co", np.asarray(vertices, np.float32).ravel())
    mesh.loops.add(faces.size)
    mesh.loops.foreach_set("vertex_index", np.asarray(faces, np.int32).ravel())
    mesh.polygons.add(len(faces))
    mesh.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
    mesh.update()
    mesh.shade_smooth()
    material = bpy.data.materials.new("asset")
    mesh.materials.append(material)
    scene.collection.objects.link(bpy.data.objects.new("asset", mesh))
    return material


def _place_camera(camera: Any, scene: Any, cam: dict[str, Any]) -> None:
    from mathutils import Matrix

    settings = cam["blender"]  # backend.camera.to_blender
    camera.matrix_world = Matrix(settings["matrix_world"])
    scene.render.resolution_x, scene.render.resolution_y = int(settings["resolution_x"]), int(settings["resolution_y"])
    data = camera.data
    data.sensor_fit, data.sensor_width = settings["sensor_fit"], float(settings["sensor_width"])
    data.shift_x, data.shift_y = float(settings["shift_x"]), float(settings["shift_y"])
    data.clip_start, data.clip_end = float(settings["clip_start"]), float(settings["clip_end"])
    data.type = settings["type"]
    if data.type == "ORTHO":
        data.ortho_scale = float(settings["ortho_scale"])
    else:
        data.lens = float(settings["lens"])


def _render(scene: Any, exr: bool = False) -> np.ndarray:
    """Render the scene -> [H, W, 4] float RGBA, top row first (``exr``: scene-linear float, no view transform)."""
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / ("frame.exr" if exr else "frame.png"))
        settings = scene.render.image_settings
        settings.file_format = "OPEN_EXR" if exr else "PNG"
        settings.color_mode = "RGBA"
        if exr:
            settings.color_depth = "32"
        scene.render.filepath = path
        bpy.ops.render.render(write_still=True)
        image = bpy.data.images.load(path)
        w, h = image.size
        pixels = np.empty(w * h * 4, np.float32)
        image.pixels.foreach_get(pixels)
        bpy.data.images.remove(image)
    return pixels.reshape(h, w, 4)[::-1]  # Blender's rows run bottom to top


if __name__ == "__main__":
    raise SystemExit(main())
