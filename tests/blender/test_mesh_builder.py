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


def _bent_front_and_wall() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two front faces (textured UVs) and a third, 10 degrees off them, with zero-area UVs (a side wall)."""
    bend = math.radians(10.0)
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 0, 1], [1, 0, 1], [2, math.sin(bend), 0.5]], np.float32)
    f = np.array([[0, 1, 3], [0, 3, 2], [1, 4, 3]], np.int32)
    uv = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [1, 0.5]], np.float32)
    return v, f, uv


def test_auto_smooth_makes_the_texture_border_a_crease_at_any_angle():
    """A relief's rim is a crease however steep the front is there (Auto Smooth's 30 degrees alone joins
    the front and the walls where the front is steep, splits them where not: dashes along the rim)."""
    v, f, uv = _bent_front_and_wall()
    mesh = mb.build_mesh("rim", v, f, "AUTO", uvs=uv)
    assert mb.plain_faces(mesh).tolist() == [False, False, True]
    normals = np.empty(9 * 3, np.float32)
    mesh.corner_normals.foreach_get("vector", normals)
    np.testing.assert_allclose(normals.reshape(3, 3, 3)[:2], np.tile([0.0, -1.0, 0.0], (2, 3, 1)), atol=1e-5)
    sharp = np.zeros(len(mesh.edges), bool)
    mesh.attributes["sharp_edge"].data.foreach_get("value", sharp)
    assert sharp.sum() == 1  # the shared edge only; the front's own diagonal stays smooth
    without_uvs = mb.build_mesh("bent", v, f, "AUTO")
    normals = np.empty(9 * 3, np.float32)
    without_uvs.corner_normals.foreach_get("vector", normals)
    assert np.abs(normals.reshape(3, 3, 3)[0, 1] - (0.0, -1.0, 0.0)).max() > 1e-3  # by angle alone: smooth


def test_the_builder_works_out_the_plain_faces_once_and_as_the_mesh_has_them():
    from backend.mesh.edges import mesh_edges

    v, f, uv = _bent_front_and_wall()
    corner_edge = mesh_edges(f, len(v))[1]
    mesh, plain = mb.build_mesh_and_plain("rim", v, f, "AUTO", uvs=uv, corner_edge=corner_edge)
    assert plain.tolist() == mb.plain_faces(mesh).tolist() == [False, False, True]
    sharp = np.zeros(len(mesh.edges), bool)
    mesh.attributes["sharp_edge"].data.foreach_get("value", sharp)
    assert sharp.sum() == 1, "the rim from the builder's own plain faces and corner edges"
    assert mb.build_mesh_and_plain("bent", v, f, "AUTO")[1] is None


def test_degenerate_triangles_are_dropped():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 0, 1]], np.float32)
    f = np.array([[0, 1, 2], [0, 0, 1]], np.int32)
    mesh = mb.build_mesh("d", v, f)
    assert len(mesh.polygons) == 1 and not mesh.validate(verbose=False)


def grid_textures() -> dict[str, np.ndarray]:
    normal = np.zeros((4, 6, 4), np.uint16)
    normal[0, :, 0] = 65535  # top row red
    colour = np.full((4, 6, 4), 255, np.uint8)
    colour[0, :, 1:3] = 0  # top row red
    return {"normal": normal, "base_color": colour}


def links_of(material) -> set[tuple[str, str, str, str]]:  # noqa: ANN001 - a bpy Material
    return {(lk.from_node.type, lk.from_socket.name, lk.to_node.type, lk.to_socket.name)
            for lk in material.node_tree.links}


def test_material_links_normal_map():
    arrays = grid_mesh()
    before = scene_snapshot()
    context = bpy.context
    options = BuildOptions(with_material=True)
    (obj,) = mb.add_result(context, [("grid", arrays)], [grid_textures()], options, mb.Placement())
    material = obj.active_material
    nodes = {n.image.name: n for n in material.node_tree.nodes if n.type == "TEX_IMAGE"}
    image = bpy.data.images[nodes["grid normal"].image.name]
    assert image.colorspace_settings.name == "Non-Color" and image.packed_file is not None
    px = np.empty(6 * 4 * 4, np.float32)
    image.pixels.foreach_get(px)
    assert px.reshape(4, 6, 4)[3, 0, 0] == pytest.approx(1.0)  # Blender stores the bottom row first
    colour = bpy.data.images["grid color"]
    assert colour.colorspace_settings.name == "sRGB" and colour.packed_file is not None
    colour.pixels.foreach_get(px)
    assert px.reshape(4, 6, 4)[3, 0, :3] == pytest.approx((1.0, 0.0, 0.0))
    links = links_of(material)
    assert ("TEX_IMAGE", "Color", "NORMAL_MAP", "Color") in links
    assert ("NORMAL_MAP", "Normal", "BSDF_PRINCIPLED", "Normal") in links
    assert ("TEX_IMAGE", "Color", "BSDF_PRINCIPLED", "Base Color") in links
    (normal_map,) = [n for n in material.node_tree.nodes if n.type == "NORMAL_MAP"]
    assert normal_map.space == "TANGENT" and normal_map.uv_map == mb.UV_NAME
    assert obj.data.uv_layers.get(mb.UV_NAME) is not None
    assert len(obj.data.materials) == 1, "every face of the grid is front-facing in UV: no plain material"
    after = scene_snapshot()
    assert after["objects"] == before["objects"] + ["grid"]
    assert after["collections"] == ["Hi3DGen"]


def test_without_colour_the_base_colour_stays_free():
    (obj,) = mb.add_result(bpy.context, [("grid", grid_mesh())], [grid_textures()],
                           BuildOptions(with_material=True, with_color=False), mb.Placement())
    assert ("TEX_IMAGE", "Color", "BSDF_PRINCIPLED", "Base Color") not in links_of(obj.active_material)
    assert "grid color" not in bpy.data.images


def test_faces_with_mirrored_uvs_take_the_plain_material():
    arrays = grid_mesh()
    back = dict(arrays, faces=np.concatenate([arrays["faces"], arrays["faces"][:, ::-1]]))  # a mirrored back
    (obj,) = mb.add_result(bpy.context, [("two", back)], [grid_textures()], BuildOptions(with_material=True),
                           mb.Placement())
    front, plain = obj.data.materials
    index = np.empty(len(obj.data.polygons), np.int32)
    obj.data.polygons.foreach_get("material_index", index)
    assert index.tolist() == [0] * 50 + [1] * 50
    assert not plain.node_tree.nodes["Principled BSDF"].inputs["Normal"].links
    mean = plain.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value
    assert mean[0] == pytest.approx(1.0) and 0.0 < mean[1] < 1.0  # the image's mean colour, linear


def test_no_material_without_textures_or_uvs():
    arrays = grid_mesh()
    (obj,) = mb.add_result(bpy.context, [("grid", arrays)], [{}], BuildOptions(with_material=True), mb.Placement())
    assert not obj.data.materials
    assert not mb.wants_material({k: v for k, v in arrays.items() if k != "uvs"}, grid_textures(),
                                 BuildOptions(with_material=True))


def test_failure_leaves_nothing_behind():
    good = grid_mesh()
    bad = dict(good, faces=np.array([[0, 1, 99]], np.int32))  # index past the vertices: Blender raises later
    before = scene_snapshot()
    with pytest.raises(ValueError, match="past the vertex array"):
        mb.add_result(bpy.context, [("ok", good), ("bad", bad)], [grid_textures(), grid_textures()],
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
