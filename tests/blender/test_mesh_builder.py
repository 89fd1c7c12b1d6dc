"""The mesh builder in real Blender (bpy module, headless): arrays in, native data out, all or nothing."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest

from blender_addon.settings import BuildOptions
from tests.blender.blender_session import bpy, scene_snapshot
from tests.blender.fake_backend import grid_mesh

mb = importlib.import_module("blender_addon.mesh_builder")  # imports bpy: only after blender_session


@pytest.fixture(autouse=True)
def empty_scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)


def test_mesh_matches_arrays():
    arrays = grid_mesh()
    mesh = mb.build_mesh("grid", arrays["vertices"], arrays["faces"], uvs=arrays["uvs"])
    assert (len(mesh.vertices), len(mesh.polygons), len(mesh.loops)) == (36, 50, 150)
    co = np.empty(36 * 3, np.float32)
    mesh.vertices.foreach_get("co", co)
    np.testing.assert_array_equal(co.reshape(-1, 3), arrays["vertices"])
    corners = np.empty(150, np.int32)
    mesh.loops.foreach_get("vertex_index", corners)
    np.testing.assert_array_equal(corners.reshape(-1, 3), arrays["faces"])
    uv = np.empty(150 * 2, np.float32)
    mesh.uv_layers[mb.UV_NAME].data.foreach_get("uv", uv)
    np.testing.assert_allclose(uv.reshape(-1, 2), arrays["uvs"][arrays["faces"].ravel()])
    assert not mesh.validate(verbose=False), "Blender found nothing to fix"
    assert all(p.use_smooth for p in mesh.polygons)


def test_flat_and_custom_normals():
    arrays = grid_mesh()
    flat = mb.build_mesh("flat", arrays["vertices"], arrays["faces"], "FLAT")
    assert not any(p.use_smooth for p in flat.polygons)
    tilted = np.tile(np.array([[0.0, -1.0, 1.0]], np.float32), (36, 1))
    custom = mb.build_mesh("custom", arrays["vertices"], arrays["faces"], "NORMALS", normals=tilted)
    normals = np.empty(150 * 3, np.float32)
    custom.corner_normals.foreach_get("vector", normals)
    expected = np.tile([[0, -math.sqrt(0.5), math.sqrt(0.5)]], (150, 1))
    np.testing.assert_allclose(normals.reshape(-1, 3), expected, atol=2e-3)


def test_degenerate_triangles_are_dropped():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 0, 1]], np.float32)
    f = np.array([[0, 1, 2], [0, 0, 1]], np.int32)
    mesh = mb.build_mesh("d", v, f)
    assert len(mesh.polygons) == 1 and not mesh.validate(verbose=False)


def test_material_links_normal_map():
    arrays = grid_mesh()
    pixels = np.zeros((4, 6, 4), np.uint16)
    pixels[0, :, 0] = 65535  # top row red
    before = scene_snapshot()
    context = bpy.context
    options = BuildOptions(with_material=True)
    (obj,) = mb.add_result(context, [("grid", arrays)], pixels, options, mb.Placement())
    image = bpy.data.images[obj.active_material.node_tree.nodes["Image Texture"].image.name]
    assert image.colorspace_settings.name == "Non-Color" and image.packed_file is not None
    px = np.empty(6 * 4 * 4, np.float32)
    image.pixels.foreach_get(px)
    assert px.reshape(4, 6, 4)[3, 0, 0] == pytest.approx(1.0)  # Blender stores the bottom row first
    tree = obj.active_material.node_tree
    links = {(lk.from_node.type, lk.from_socket.name, lk.to_node.type, lk.to_socket.name)
             for lk in tree.links}
    assert ("TEX_IMAGE", "Color", "NORMAL_MAP", "Color") in links
    assert ("NORMAL_MAP", "Normal", "BSDF_PRINCIPLED", "Normal") in links
    assert obj.data.uv_layers.get(mb.UV_NAME) is not None
    after = scene_snapshot()
    assert after["objects"] == before["objects"] + ["grid"]
    assert after["collections"] == ["Hi3DGen"]


def test_failure_leaves_nothing_behind():
    good = grid_mesh()
    bad = dict(good, faces=np.array([[0, 1, 99]], np.int32))  # index past the vertices: Blender raises later
    before = scene_snapshot()
    with pytest.raises(ValueError, match="past the vertex array"):
        mb.add_result(bpy.context, [("ok", good), ("bad", bad)], np.zeros((2, 2, 4), np.uint16),
                      BuildOptions(with_material=True), mb.Placement())
    assert scene_snapshot() == before


def test_placement_at_cursor_and_beside_reference_empty():
    scene = bpy.context.scene
    scene.cursor.location = (1.0, 2.0, 3.0)
    assert tuple(mb.Placement.at_cursor(scene).matrix[i][3] for i in range(3)) == (1.0, 2.0, 3.0)
    empty = bpy.data.objects.new("ref", None)
    empty.empty_display_type = "IMAGE"
    empty.empty_display_size = 2.0
    empty.rotation_euler = (math.pi / 2, 0.0, 0.0)  # as Add > Image > Reference in front view
    empty.location = (5.0, 0.0, 0.0)
    scene.collection.objects.link(empty)
    bpy.context.view_layer.update()
    m = np.array(mb.Placement.beside(empty).matrix)
    np.testing.assert_allclose(m[:3, :3], 2.0 * np.eye(3), atol=1e-6)  # front-view empty: no turn, its size
    np.testing.assert_allclose(m[:3, 3], [5.0 + 2.2, 0.0, 0.0], atol=1e-6)
