"""A baked full-3D mesh's files in real Blender (bpy 5.0 module): the GLB imports with its UV map and a
material whose Base Color and Normal come from the two embedded images, and Blender's own tangent frame
turns the baked normal texture back into the predicted normals on the side the input view sees. The OBJ's
MTL names both images."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from backend.camera import make_camera  # numpy only: safe in Blender's Python
from tests.blender.blender_session import bpy

REPO = Path(__file__).resolve().parents[2]
BACKEND_PYTHON = Path(os.environ.get("HI3DGEN_TEST_BACKEND_PYTHON", REPO / ".venv" / "bin" / "python"))

pytestmark = pytest.mark.skipif(not BACKEND_PYTHON.exists(), reason="backend venv (.venv) not installed")


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> Path:
    """The bust baked from a known view (tests/backend/bake_scene.py), written as GLB and OBJ."""
    folder = tmp_path_factory.mktemp("baked")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([str(BACKEND_PYTHON), "-m", "tests.backend.bake_scene", str(folder)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return folder


@pytest.fixture(autouse=True)
def empty_scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)


def _image_feeding(socket):  # noqa: ANN001, ANN202 - bpy socket -> bpy Image
    (link,) = socket.links
    node = link.from_node
    if node.type == "NORMAL_MAP":
        assert node.space == "TANGENT"
        (link,) = node.inputs["Color"].links
        node = link.from_node
    assert node.type == "TEX_IMAGE" and node.image is not None
    return node.image


def _imported(path: Path):  # noqa: ANN202 - a bpy Object
    assert bpy.ops.import_scene.gltf(filepath=str(path)) == {"FINISHED"}
    (obj,) = [o for o in bpy.data.objects if o.type == "MESH"]
    return obj


def _array(collection, attribute: str, count: int, width: int) -> np.ndarray:  # noqa: ANN001
    values = np.empty(count * width, np.float32)
    collection.foreach_get(attribute, values)
    return values.reshape(count, width)


def test_the_glb_imports_with_its_uvs_and_both_textures_linked(outputs):
    obj = _imported(outputs / "bust.glb")
    mesh = obj.data
    assert len(mesh.uv_layers) == 1
    material = mesh.materials[0]
    bsdf = next(n for n in material.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    color = _image_feeding(bsdf.inputs["Base Color"])
    normal = _image_feeding(bsdf.inputs["Normal"])
    assert tuple(color.size) == (512, 512) and tuple(normal.size) == (512, 512)
    assert normal.colorspace_settings.name == "Non-Color" and color.colorspace_settings.name == "sRGB"
    assert color.packed_file is not None and normal.packed_file is not None
    material_index = np.empty(len(mesh.polygons), np.int32)
    mesh.polygons.foreach_get("material_index", material_index)
    assert (material_index == 0).mean() > 0.99, "every face with a proper UV triangle takes the textures"


def test_blender_shades_the_seen_side_with_the_predicted_normals(outputs):
    """Per seen triangle (its centre; those of at least 16 texels): x T + y B + z N from Blender's MikkTSpace
    tangents and the imported texture equals the predicted normal (the surface's plus a bump field) within a
    few degrees; the geometry alone, or the texture with green flipped, misses by far more."""
    truth = np.load(outputs / "bust_truth.npz")
    height, width = truth["mask"].shape
    camera = make_camera(truth["rotation"], truth["translation"], width, height, float(truth["fov"]))
    obj = _imported(outputs / "bust.glb")
    mesh = obj.data
    mesh.calc_tangents(uvmap=mesh.uv_layers[0].name)
    count = len(mesh.loops)
    frame = {k: _array(mesh.loops, k, count, 3).reshape(-1, 3, 3).mean(1) for k in ("tangent", "bitangent")}
    normal = _array(mesh.corner_normals, "vector", count, 3).reshape(-1, 3, 3).mean(1)
    uv_corners = _array(mesh.uv_layers[0].data, "uv", count, 2).reshape(-1, 3, 2)
    uv = uv_corners.mean(1)  # [F, 2] triangle centres
    corners = np.empty(count, np.int32)
    mesh.loops.foreach_get("vertex_index", corners)
    centre = _array(mesh.vertices, "co", len(mesh.vertices), 3)[corners].reshape(-1, 3, 3).mean(1)
    image = _image_feeding(next(n for n in mesh.materials[0].node_tree.nodes
                                if n.type == "BSDF_PRINCIPLED").inputs["Normal"])
    size = image.size[0]
    pixels = np.empty(size * size * 4, np.float32)
    image.pixels.foreach_get(pixels)
    texel = pixels.reshape(size, size, 4)[np.clip((uv[:, 1] * size).astype(int), 0, size - 1),
                                          np.clip((uv[:, 0] * size).astype(int), 0, size - 1), :3] * 2.0 - 1.0
    u, v, depth = camera.project(centre).T
    col, row = np.clip(u.astype(int), 0, width - 1), np.clip(v.astype(int), 0, height - 1)
    edges = uv_corners[:, 1:] - uv_corners[:, :1]  # [F, 2, 2]
    texels = np.abs(edges[:, 0, 0] * edges[:, 1, 1] - edges[:, 0, 1] * edges[:, 1, 0]) * size * size / 2
    seen = truth["mask"][row, col] & (np.abs(truth["depth"][row, col] - depth) < 0.005) & (texels >= 16)
    expected = truth["normals"][row, col] @ camera.rotation  # camera -> world

    def error(t: np.ndarray) -> np.ndarray:
        shading = t[:, :1] * frame["tangent"] + t[:, 1:2] * frame["bitangent"] + t[:, 2:3] * normal
        shading /= np.linalg.norm(shading, axis=1, keepdims=True)
        return np.degrees(np.arccos(np.clip(np.einsum("ij,ij->i", shading, expected), -1.0, 1.0)))[seen]

    angle, flipped = error(texel), error(texel * (1.0, -1.0, 1.0))
    geometry = error(np.tile([0.0, 0.0, 1.0], (len(texel), 1)))  # the texture ignored
    print(f"\nseen triangles {int(seen.sum())}: texture {angle.mean():.2f} deg mean, "
          f"{np.percentile(angle, 95):.2f} p95; green flipped {flipped.mean():.2f}; geometry alone "
          f"{geometry.mean():.2f}")
    assert seen.sum() > 400
    assert angle.mean() < 2.0 and np.percentile(angle, 95) < 5.0
    assert geometry.mean() > 2.0 * angle.mean() + 1.0
    assert flipped.mean() > 2.0 * angle.mean() + 1.0


def test_the_obj_names_both_textures_in_its_mtl(outputs):
    assert bpy.ops.wm.obj_import(filepath=str(outputs / "bust.obj"), forward_axis="NEGATIVE_Y",
                                 up_axis="Z") == {"FINISHED"}
    (obj,) = [o for o in bpy.data.objects if o.type == "MESH"]
    assert len(obj.data.uv_layers) == 1
    material = obj.data.materials[0]
    bsdf = next(n for n in material.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    assert Path(_image_feeding(bsdf.inputs["Base Color"]).filepath).name == "bust_color.png"
    assert Path(_image_feeding(bsdf.inputs["Normal"]).filepath).name == "bust_normal.png"


def test_the_add_on_builds_its_material_for_a_baked_mesh(outputs):
    """What the add-on receives for a textured hi3dgen mesh (arrays + ``MeshTexture`` frames) builds into an
    object with the UV map and the normal-mapped, image-coloured material on every proper face."""
    import importlib

    from blender_addon.settings import BuildOptions

    mb = importlib.import_module("blender_addon.mesh_builder")
    data = np.load(outputs / "bust_arrays.npz")
    arrays = {k: data[k] for k in ("vertices", "faces", "normals", "uvs")}
    textures = {"normal": data["texture_normal"], "base_color": data["texture_base_color"]}
    assert textures["normal"].dtype == np.uint16 and textures["base_color"].dtype == np.uint8
    (obj,) = mb.add_result(bpy.context, [("bust", arrays)], [textures], BuildOptions(with_material=True),
                           mb.Placement())
    material = obj.data.materials[0]
    bsdf = next(n for n in material.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    assert tuple(_image_feeding(bsdf.inputs["Base Color"]).size) == (512, 512)
    assert tuple(_image_feeding(bsdf.inputs["Normal"]).size) == (512, 512)
    assert obj.data.uv_layers.get(mb.UV_NAME) is not None
    material_index = np.empty(len(obj.data.polygons), np.int32)
    obj.data.polygons.foreach_get("material_index", material_index)
    assert (material_index == 0).mean() > 0.99
