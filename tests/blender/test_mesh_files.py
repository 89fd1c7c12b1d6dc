"""The CLI's mesh files in real Blender (bpy 5.0 module): the relief GLB imports with its UV map and a
normal-mapped material, and Blender's own tangent frame turns the texture back into the predicted normals,
the right way round. The OBJ's MTL gives the same node setup through Blender's OBJ importer."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from backend.normalmap import decode_png16  # numpy only: safe in Blender's Python
from tests.blender.blender_session import bpy, write_png

REPO = Path(__file__).resolve().parents[2]
BACKEND_PYTHON = Path(os.environ.get("HI3DGEN_TEST_BACKEND_PYTHON", REPO / ".venv" / "bin" / "python"))

pytestmark = pytest.mark.skipif(not BACKEND_PYTHON.exists(), reason="backend venv (.venv) not installed")


def generate(image: Path, out: Path, *args: str) -> Path:
    """``python -m backend generate`` with the backend's interpreter; returns the output folder."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([str(BACKEND_PYTHON), "-m", "backend", "generate", str(image), "-o", str(out),
                           "--param", "resolution=96", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> Path:
    """The relief of a shaded disc, written with the object-space map beside it (the truth to compare)."""
    folder = tmp_path_factory.mktemp("files")
    image = write_png(folder / "disc.png", 160)
    generate(image, folder / "gl", "--format", "obj")
    return generate(image, folder / "object", "--convention", "object")


@pytest.fixture(autouse=True)
def empty_scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)


def normal_map_chain(material) -> tuple:  # noqa: ANN001 - a bpy Material
    """(Normal Map node, its image) feeding the material's Principled BSDF Normal input."""
    tree = material.node_tree
    bsdf = next(n for n in tree.nodes if n.type == "BSDF_PRINCIPLED")
    (link,) = bsdf.inputs["Normal"].links
    normal_map = link.from_node
    assert normal_map.type == "NORMAL_MAP" and normal_map.space == "TANGENT"
    (feed,) = normal_map.inputs["Color"].links
    assert feed.from_node.type == "TEX_IMAGE" and feed.from_node.image is not None
    return normal_map, feed.from_node.image


def imported_glb(path: Path):  # noqa: ANN201 - a bpy Object
    assert bpy.ops.import_scene.gltf(filepath=str(path)) == {"FINISHED"}
    (obj,) = [o for o in bpy.data.objects if o.type == "MESH"]
    return obj


def test_the_glb_imports_with_a_uv_map_and_a_normal_mapped_material(outputs):
    obj = imported_glb(outputs / "disc.glb")
    mesh = obj.data
    assert len(mesh.uv_layers) == 1
    front, plain = mesh.materials
    _, image = normal_map_chain(front)
    assert image.colorspace_settings.name == "Non-Color" and image.packed_file is not None
    assert tuple(image.size) == read_png_size(outputs / "disc_normal.png")
    assert not plain.node_tree.nodes["Principled BSDF"].inputs["Normal"].links  # the back and walls: plain


def read_png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def corner_array(collection, attribute: str, count: int, width: int) -> np.ndarray:  # noqa: ANN001
    values = np.empty(count * width, np.float32)
    collection.foreach_get(attribute, values)
    return values.reshape(count, width) if width > 1 else values


def shading_errors(obj, truth_png: Path) -> dict[str, tuple[float, float]]:  # noqa: ANN001 - a bpy Object
    """Per corner of the front (material slot 0): the angle between x T + y B + z N, from Blender's
    MikkTSpace tangents and the texture feeding the slot's Normal Map node, and the predicted normal
    (``truth_png``: a ``--convention object`` PNG over the same frame). (mean, p95) in degrees for the
    texture, the texture read with green flipped, no texture, and the camera-space map read as tangent space;
    plus 'corners': (corners compared, front corners)."""
    mesh = obj.data
    mesh.calc_tangents(uvmap=mesh.uv_layers[0].name)
    count = len(mesh.loops)
    tangent = corner_array(mesh.loops, "tangent", count, 3)
    bitangent = corner_array(mesh.loops, "bitangent", count, 3)
    normal = corner_array(mesh.corner_normals, "vector", count, 3)
    uv = corner_array(mesh.uv_layers[0].data, "uv", count, 2)
    material = np.empty(len(mesh.polygons), np.int32)
    mesh.polygons.foreach_get("material_index", material)
    front = np.repeat(material == 0, 3)  # triangles: three corners each
    _, image = normal_map_chain(mesh.materials[0])
    width, height = image.size
    pixels = np.empty(width * height * 4, np.float32)
    image.pixels.foreach_get(pixels)
    pixels = pixels.reshape(height, width, 4)  # bottom row first, as UV v
    colours = decode_png16(truth_png.read_bytes())[::-1] / 65535.0  # bottom row first
    assert colours.shape[:2] == (height, width)
    truth = colours * 2.0 - 1.0  # [H, W, 3] Blender object space (``--convention object``)
    truth /= np.linalg.norm(truth, axis=-1, keepdims=True)
    col = np.clip((uv[:, 0] * width).astype(int), 0, width - 1)
    row = np.clip((uv[:, 1] * height).astype(int), 0, height - 1)
    expected = truth[row, col]
    use = front & (np.abs(expected - (0.0, -1.0, 0.0)).max(axis=1) > 1e-3)  # corners over the object
    texel = pixels[row, col, :3] * 2.0 - 1.0

    def error(t: np.ndarray) -> tuple[float, float]:
        shading = t[:, :1] * tangent + t[:, 1:2] * bitangent + t[:, 2:3] * normal
        shading /= np.linalg.norm(shading, axis=1, keepdims=True)
        angle = np.degrees(np.arccos(np.clip(np.einsum("ij,ij->i", shading, expected), -1.0, 1.0)))[use]
        return float(angle.mean()), float(np.percentile(angle, 95))

    return {"texture": error(texel), "flipped": error(texel * (1.0, -1.0, 1.0)),
            "untextured": error(np.tile([0.0, 0.0, 1.0], (count, 1))),
            "camera_as_tangent": error(expected[:, [0, 2, 1]] * (1.0, 1.0, -1.0)),  # the unconverted map
            "corners": (float(use.sum()), float(front.sum()))}


def assert_shades_as_predicted(errors: dict[str, tuple[float, float]]) -> None:
    """Most of the front compared; the texture within 2 degrees mean (5 at p95) of the prediction, and the
    wrong readings (green flipped, no texture, the camera-space map) far worse."""
    (mean, p95), (used, front) = errors["texture"], errors["corners"]
    print(f"\nfront corners {int(used)}: texture {mean:.2f} deg mean, {p95:.2f} p95; green flipped "
          f"{errors['flipped'][0]:.2f}; geometry alone {errors['untextured'][0]:.2f}; camera-space map read as "
          f"tangent space {errors['camera_as_tangent'][0]:.2f}")
    assert used > 0.8 * front
    assert mean < 2.0 and p95 < 5.0
    assert min(errors[k][0] for k in ("flipped", "untextured", "camera_as_tangent")) > 2 * mean + 1.0


def test_blender_shades_the_front_with_the_predicted_normals(outputs):
    """Per corner of the front: x T + y B + z N from Blender's MikkTSpace tangents and the imported texture
    equals the predicted normal (``--convention object`` PNG, the same frame) within a few degrees; the
    texture read with green flipped, or no texture at all, misses by far more."""
    errors = shading_errors(imported_glb(outputs / "disc.glb"), outputs / "disc_normal.png")
    assert_shades_as_predicted(errors)


def test_the_obj_imports_with_the_normal_map_from_its_mtl(outputs):
    obj_path = outputs.parent / "gl" / "disc.obj"
    assert bpy.ops.wm.obj_import(filepath=str(obj_path), forward_axis="NEGATIVE_Y", up_axis="Z") == {"FINISHED"}
    (obj,) = [o for o in bpy.data.objects if o.type == "MESH"]
    assert len(obj.data.uv_layers) == 1
    front = next(m for m in obj.data.materials if m.name == "disc")
    _, image = normal_map_chain(front)
    assert Path(image.filepath).name == "disc_normal.png"
    # Blender's OBJ importer leaves the image in sRGB; the README says to set Non-Color (the GLB needs nothing)
