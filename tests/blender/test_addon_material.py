"""The add-on's own material, end to end in real Blender: the operator generates a relief through the real
backend with "With Material", and the object's material is the mesh's tangent-space normal texture (Non-Color,
a Tangent-space Normal Map node on the mesh's UV map) with the image as base colour; the back and walls take a
plain material. Blender's own tangents then shade the front with the predicted normals, as for the CLI's GLB."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.blender.blender_session import bpy, clear_scene, write_png
from tests.blender.test_extension import (  # noqa: F401 - module fixtures, one installed extension here
    BACKEND_PYTHON,
    built_zip,
    ext,
)
from tests.blender.test_mesh_builder import links_of
from tests.blender.test_mesh_files import assert_shades_as_predicted, generate, normal_map_chain, shading_errors

pytestmark = pytest.mark.skipif(not BACKEND_PYTHON.exists(), reason="backend venv (.venv) not installed")

RESOLUTION = 96


@pytest.fixture(scope="module")
def disc(tmp_path_factory):  # noqa: ANN201 - (image path, the predicted normals in object space)
    """The shaded disc, and the CLI's ``--convention object`` map of the same relief (the truth)."""
    folder = tmp_path_factory.mktemp("material")
    image = write_png(folder / "disc.png", 160)
    truth = generate(image, folder / "object", "--convention", "object") / "disc_normal.png"
    return image, truth


def generated(image, **options):  # noqa: ANN001, ANN201 - a path; a bpy Object
    clear_scene()
    result = bpy.ops.hi3dgen.generate(image_path=str(image), engine="relief", seed=0,
                                      params_json=f'{{"resolution": {RESOLUTION}}}', **options)
    assert result == {"FINISHED"}
    return bpy.data.objects["disc"]


def glb_base_colour(path: Path) -> np.ndarray:
    """The RGB pixels [H, W, 3] of the first material's baseColorTexture in a GLB (own minimal reader)."""
    data = path.read_bytes()
    json_len = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(data[20:20 + json_len])
    blob = data[20 + json_len + 8:]
    texture = doc["materials"][0]["pbrMetallicRoughness"]["baseColorTexture"]["index"]
    view = doc["bufferViews"][doc["images"][doc["textures"][texture]["source"]]["bufferView"]]
    png = blob[view.get("byteOffset", 0):view.get("byteOffset", 0) + view["byteLength"]]
    image = bpy.data.images.new("glb colour", 1, 1)
    try:
        image.pack(data=png, data_len=len(png))
        image.source = "FILE"
        width, height = image.size
        pixels = np.empty(width * height * 4, np.float32)
        image.pixels.foreach_get(pixels)
    finally:
        bpy.data.images.remove(image)
    return np.round(pixels.reshape(height, width, 4)[::-1, :, :3] * 255.0).astype(np.uint8)


def test_the_material_is_the_tangent_space_texture_with_the_image_colour(ext, disc):  # noqa: F811
    image, truth = disc
    obj = generated(image, with_material=True)
    front, plain = obj.data.materials
    normal_map, normal = normal_map_chain(front)
    assert normal.colorspace_settings.name == "Non-Color" and normal.packed_file is not None
    assert normal_map.space == "TANGENT" and obj.data.uv_layers.get(normal_map.uv_map) is not None
    links = links_of(front)
    assert ("NORMAL_MAP", "Normal", "BSDF_PRINCIPLED", "Normal") in links
    assert ("TEX_IMAGE", "Color", "BSDF_PRINCIPLED", "Base Color") in links
    bsdf = front.node_tree.nodes["Principled BSDF"]
    colour = bsdf.inputs["Base Color"].links[0].from_node.image
    assert colour.colorspace_settings.name == "sRGB" and colour.packed_file is not None
    assert tuple(colour.size) == tuple(normal.size)  # one frame: the crop the UVs span
    width, height = colour.size
    pixels = np.empty(width * height * 4, np.float32)
    colour.pixels.foreach_get(pixels)
    received = np.round(pixels.reshape(height, width, 4)[::-1, :, :3] * 255.0).astype(np.uint8)  # top row first
    assert np.array_equal(received, glb_base_colour(truth.parent / "disc.glb"))  # the CLI's: the image crop
    assert not plain.node_tree.nodes["Principled BSDF"].inputs["Normal"].links
    index = np.empty(len(obj.data.polygons), np.int32)
    obj.data.polygons.foreach_get("material_index", index)
    assert 0 < index.sum() < len(index)  # the back and walls: the plain material


def test_without_base_colour_only_the_normal_texture(ext, disc):  # noqa: F811
    obj = generated(disc[0], with_material=True, with_color=False)
    front = obj.data.materials[0]
    normal_map_chain(front)
    assert not front.node_tree.nodes["Principled BSDF"].inputs["Base Color"].links
    assert not [i for i in bpy.data.images if i.name.endswith("color")]


def test_blender_shades_the_add_on_object_with_the_predicted_normals(ext, disc):  # noqa: F811
    """The numeric check of the CLI's GLB, on the object the add-on built (its own mesh, Auto Smooth)."""
    image, truth = disc
    errors = shading_errors(generated(image, with_material=True), truth)
    assert_shades_as_predicted(errors)


def test_the_rim_is_a_crease_and_continues_the_front_slope(ext, disc):  # noqa: F811
    """The add-on's relief, shaded as built (Auto Smooth): every edge between the front and a wall is sharp,
    and the front faces along the rim are tilted like the ring inside them (no flat terrace: the fringe).
    Measured on this disc: rim 62.2 degrees, the ring inside 61.8; before, 0.2 and 19.6."""
    mesh = generated(disc[0], with_material=True).data
    count = len(mesh.polygons)
    material = np.empty(count, np.int32)
    mesh.polygons.foreach_get("material_index", material)
    normal = np.empty(count * 3, np.float32)
    mesh.polygons.foreach_get("normal", normal)
    tilt = np.degrees(np.arccos(np.clip(-normal.reshape(-1, 3)[:, 1], -1.0, 1.0)))  # from the view (-Y)
    corner_edge = np.empty(len(mesh.loops), np.int32)
    mesh.attributes[".corner_edge"].data.foreach_get("value", corner_edge)
    sharp = np.zeros(len(mesh.edges), bool)
    mesh.attributes["sharp_edge"].data.foreach_get("value", sharp)
    face = np.repeat(np.arange(count), 3)
    front = material[face] == 0
    on_front = np.bincount(corner_edge[front], minlength=len(mesh.edges))
    on_plain = np.bincount(corner_edge[~front], minlength=len(mesh.edges))
    border = (on_front > 0) & (on_plain > 0)
    assert border.sum() > 50 and sharp[border].all()
    rim = np.zeros(count, bool)
    rim[face[front & border[corner_edge]]] = True
    rim_edges = np.zeros(len(mesh.edges), bool)
    rim_edges[corner_edge[rim[face]]] = True
    inner = np.zeros(count, bool)
    inner[face[front & rim_edges[corner_edge]]] = True
    inner &= ~rim
    print(f"\nrim front faces {rim.sum()}: tilt median {np.median(tilt[rim]):.1f}; the ring inside "
          f"{np.median(tilt[inner]):.1f}")
    assert abs(np.median(tilt[rim]) - np.median(tilt[inner])) < 15.0
