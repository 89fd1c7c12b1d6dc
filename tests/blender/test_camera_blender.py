"""The one camera convention through real Blender: ``Camera`` -> Blender camera object -> Blender's projection
equals ours, and a Cycles silhouette equals our rasterizer's (run by the backend interpreter)."""

from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backend.camera import Camera, look_at, make_camera, to_blender
from tests.blender.blender_session import bpy

mathutils = importlib.import_module("mathutils")  # Blender's modules: only after blender_session
world_to_camera_view = importlib.import_module("bpy_extras.object_utils").world_to_camera_view
Euler, Matrix, Vector = mathutils.Euler, mathutils.Matrix, mathutils.Vector

REPO = Path(__file__).resolve().parents[2]
SIZES = [(160, 120), (90, 130)]


def _cameras() -> list[Camera]:
    r, t = look_at([1.3, -2.2, 0.9], [0.05, 0.02, -0.03])
    out = []
    for w, h in SIZES:
        out.append(make_camera(r, t, w, h, fov=math.radians(38)))
        out.append(make_camera(r, t, w, h, ortho_scale=1.4))
    return out


def blender_camera(camera: Camera, use_euler: bool) -> object:
    """A camera object in the current scene set from ``to_blender`` (and the scene's resolution)."""
    settings = to_blender(camera)
    data = bpy.data.cameras.new("aligned")
    data.type = settings["type"]
    data.sensor_fit = settings["sensor_fit"]
    data.sensor_width = settings["sensor_width"]
    data.shift_x, data.shift_y = settings["shift_x"], settings["shift_y"]
    data.clip_start, data.clip_end = settings["clip_start"], settings["clip_end"]
    if settings["type"] == "ORTHO":
        data.ortho_scale = settings["ortho_scale"]
    else:
        data.lens = settings["lens"]
    obj = bpy.data.objects.new("aligned", data)
    bpy.context.scene.collection.objects.link(obj)
    if use_euler:
        obj.location = Vector(settings["location"])
        obj.rotation_mode = "XYZ"
        obj.rotation_euler = Euler(settings["rotation_euler"], "XYZ")
    else:
        obj.matrix_world = Matrix(settings["matrix_world"])
    scene = bpy.context.scene
    scene.camera = obj
    scene.render.resolution_x, scene.render.resolution_y = settings["resolution_x"], settings["resolution_y"]
    scene.render.resolution_percentage = 100
    scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0
    bpy.context.view_layer.update()
    return obj


@pytest.fixture(autouse=True)
def empty_scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)


@pytest.mark.parametrize("use_euler", [False, True], ids=["matrix_world", "euler"])
@pytest.mark.parametrize("index", range(4), ids=["persp-wide", "ortho-wide", "persp-tall", "ortho-tall"])
def test_blender_projects_points_as_we_do(index: int, use_euler: bool):
    camera = _cameras()[index]
    obj = blender_camera(camera, use_euler)
    points = np.random.default_rng(index).uniform(-0.5, 0.5, (40, 3))
    ours = camera.project(points)
    scene = bpy.context.scene
    for p, (u, v, depth) in zip(points, ours):
        x, y, z = world_to_camera_view(scene, obj, Vector(p.tolist()))  # normalised, origin bottom-left
        assert (x * camera.width, (1.0 - y) * camera.height) == pytest.approx((u, v), abs=1e-3)
        assert z == pytest.approx(depth, abs=1e-5)


def test_blender_camera_matrices_round_trip():
    for camera in _cameras():
        obj = blender_camera(camera, use_euler=True)
        world = np.array(obj.matrix_world)
        np.testing.assert_allclose(world[:3, :3], camera.rotation.T, atol=1e-5)
        np.testing.assert_allclose(world[:3, 3], camera.center, atol=1e-5)


def _our_mask(vertices: np.ndarray, faces: np.ndarray, camera: Camera, tmp: Path) -> np.ndarray:
    """Our rasterizer's silhouette, run by the backend's interpreter (torch is not in Blender's Python)."""
    np.save(tmp / "v.npy", vertices)
    np.save(tmp / "f.npy", faces)
    (tmp / "camera.json").write_text(json.dumps(camera.to_dict()))
    code = ("import json, sys, numpy as np; from backend.camera import Camera; "
            "from backend.render.shade import render_normal_map; d = sys.argv[1]; "
            "cam = Camera.from_dict(json.load(open(d + '/camera.json'))); "
            "m = render_normal_map(np.load(d + '/v.npy'), np.load(d + '/f.npy'), cam)[0]; np.save(d + '/m.npy', m)")
    python = os.environ.get("HI3DGEN_PYTHON", sys.executable)
    subprocess.run([python, "-c", code, str(tmp)], cwd=REPO, check=True, timeout=300,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    return np.load(tmp / "m.npy")


def _cycles_mask(vertices: np.ndarray, faces: np.ndarray, camera: Camera, tmp: Path) -> np.ndarray:
    mesh = bpy.data.meshes.new("shape")
    mesh.from_pydata(vertices.tolist(), [], faces.tolist())
    bpy.context.scene.collection.objects.link(bpy.data.objects.new("shape", mesh))
    blender_camera(camera, use_euler=False)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 16
    scene.cycles.use_denoising = False
    scene.cycles.pixel_filter_type = "BOX"
    scene.cycles.filter_width = 0.01  # every sample inside its own pixel: coverage, not a blur
    scene.render.film_transparent = True
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"
    scene.render.filepath = str(tmp / "cycles.png")
    bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(str(tmp / "cycles.png"))
    w, h = image.size
    pixels = np.array(image.pixels[:], np.float32).reshape(h, w, 4)[::-1]  # Blender's rows run bottom-up
    return pixels[..., 3] > 0.5


@pytest.mark.parametrize("index", [0, 3], ids=["persp-wide", "ortho-tall"])
def test_cycles_silhouette_matches_our_rasterizer(index: int, tmp_path: Path):
    from tests.backend.shapes import chair

    vertices, faces = chair()
    camera = _cameras()[index]
    theirs = _cycles_mask(vertices, faces, camera, tmp_path)
    ours = _our_mask(vertices, faces, camera, tmp_path)
    assert theirs.shape == ours.shape == (camera.height, camera.width)
    iou = (theirs & ours).sum() / (theirs | ours).sum()
    print(f"Cycles vs ours: IoU {iou:.4f} over {ours.sum()} pixels")
    assert ours.sum() > 500 and iou > 0.97, iou


@pytest.mark.parametrize("index", [0, 3], ids=["persp-wide", "ortho-tall"])
def test_blender_imports_the_glb_camera_as_ours(index: int, tmp_path: Path):
    """The glTF form: a GLB written by the backend with the camera in it, through Blender's glTF importer."""
    camera = _cameras()[index]
    (tmp_path / "camera.json").write_text(json.dumps(camera.to_dict()))
    code = ("import json, sys; from backend.camera import Camera; from backend.mesh.export import export_mesh; "
            "from backend.mesh.glb_camera import add_camera; from tests.backend.shapes import chair; d = sys.argv[1]; "
            "export_mesh(*chair(), d + '/c.glb'); add_camera(d + '/c.glb', "
            "Camera.from_dict(json.load(open(d + '/camera.json'))))")
    python = os.environ.get("HI3DGEN_PYTHON", sys.executable)
    subprocess.run([python, "-c", code, str(tmp_path)], cwd=REPO, check=True, timeout=300,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    bpy.ops.import_scene.gltf(filepath=str(tmp_path / "c.glb"))
    (obj,) = [o for o in bpy.data.objects if o.type == "CAMERA"]
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = camera.width, camera.height
    scene.render.resolution_percentage = 100
    bpy.context.view_layer.update()
    points = np.random.default_rng(index).uniform(-0.5, 0.5, (20, 3))
    for p, (u, v, depth) in zip(points, camera.project(points)):
        x, y, z = world_to_camera_view(scene, obj, Vector(p.tolist()))
        assert (x * camera.width, (1.0 - y) * camera.height) == pytest.approx((u, v), abs=1e-2)
        assert z == pytest.approx(depth, abs=1e-4)
