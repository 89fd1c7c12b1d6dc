"""The backend's edges in real Blender: a mesh built with the corner edges it sends (the add-on rebuilds the
edge rows) equals one Blender computes its edges for, and corner edges that do not check out are refused
(Blender computes its own; nothing half-built stays)."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from backend.mesh.edges import mesh_edges
from backend.relief.mesh import relief_mesh
from blender_addon.mesh_edges import checked_edges
from blender_addon.settings import BuildOptions
from tests.blender.blender_session import bpy, scene_snapshot
from tests.blender.fake_backend import grid_mesh

mb = importlib.import_module("blender_addon.mesh_builder")  # imports bpy: only after blender_session


@pytest.fixture(autouse=True)
def empty_scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)


def _relief() -> dict[str, np.ndarray]:
    """A small closed relief (rim edges sharper than Auto Smooth's 30 degrees), plus a degenerate face
    whose edge (0, 1) no other face has."""
    cells = np.zeros((16, 18), bool)
    cells[3:13, 3:10] = True
    cells[5:9, 11:16] = True
    mesh = relief_mesh(np.random.default_rng(0).random(cells.shape) * 0.05, cells, 0.05)
    n = len(mesh.vertices)
    vertices = np.concatenate([mesh.vertices, [[2.0, 0.0, 0.0], [2.0, 0.0, 1.0]]]).astype(np.float32)
    faces = np.concatenate([mesh.faces, [[n, n, n + 1]]]).astype(np.int32)
    return {"vertices": vertices, "faces": faces, "uvs": np.zeros((n + 2, 2), np.float32)}


def _with_edges(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    edges, corner = mesh_edges(arrays["faces"], len(arrays["vertices"]))
    return dict(arrays, edges=edges, corner_edge=corner)  # "edges": what the add-on must rebuild


def _read(mesh, domain: str, name: str, kind, width: int = 1) -> np.ndarray:  # noqa: ANN001 - bpy
    n = {"EDGE": len(mesh.edges), "CORNER": len(mesh.loops), "FACE": len(mesh.polygons)}[domain]
    out = np.zeros(n * width, kind)
    attribute = mesh.attributes.get(name)
    if attribute is not None:
        attribute.data.foreach_get("value", out)
    return out.reshape(-1, width) if width > 1 else out


def _summary(mesh) -> dict[str, object]:  # noqa: ANN001 - a bpy Mesh
    """What must not depend on who computed the edges: edge set, each corner's edge as a vertex pair,
    sharp edges and faces, the corner normals."""
    pairs = np.sort(_read(mesh, "EDGE", ".edge_verts", np.int32, 2), axis=1)  # [E, 2]
    corner = _read(mesh, "CORNER", ".corner_edge", np.int32)  # [3F]
    sharp = _read(mesh, "EDGE", "sharp_edge", bool)
    normals = np.empty(len(mesh.loops) * 3, np.float32)
    mesh.corner_normals.foreach_get("vector", normals)
    return {"edges": sorted(map(tuple, pairs.tolist())), "corners": pairs[corner].tolist(),
            "sharp": sorted(map(tuple, pairs[sharp].tolist())), "flat": _read(mesh, "FACE", "sharp_face", bool),
            "normals": normals.reshape(-1, 3)}


def _assert_same(given, computed) -> None:  # noqa: ANN001 - bpy Meshes
    a, b = _summary(given), _summary(computed)
    assert a["edges"] == b["edges"] and a["corners"] == b["corners"] and a["sharp"] == b["sharp"]
    assert np.array_equal(a["flat"], b["flat"])
    np.testing.assert_allclose(a["normals"], b["normals"], atol=1e-6)
    assert not given.validate(verbose=False), "Blender found nothing to fix"


@pytest.mark.parametrize("shading", ["AUTO", "SMOOTH", "FLAT", "NORMALS"])
def test_given_edges_build_the_same_mesh(shading, capfd):
    arrays = _with_edges(_relief())
    normals = arrays["vertices"] + np.float32(0.1)  # [V, 3] any directions: custom normals
    computed = mb.build_mesh("computed", arrays["vertices"], arrays["faces"], shading, normals)
    given = mb.build_mesh("given", arrays["vertices"], arrays["faces"], shading, normals,
                          corner_edge=arrays["corner_edge"])
    assert "refused" not in capfd.readouterr().err and len(given.edges) == len(arrays["edges"])
    assert (arrays["corner_edge"][-1] == -1).all(), "the degenerate face has no edges"
    assert shading != "AUTO" or _summary(given)["sharp"], "the rim has sharp edges"
    _assert_same(given, computed)


def _corruptions(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Corner edges that must not pass, each with what is wrong."""
    edges, corner = arrays["edges"], arrays["corner_edge"]
    n = len(edges)
    order = np.argsort(edges[:, 0], kind="stable")  # the rows sorted by lo instead of (hi, lo)
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    moved = corner.copy()
    moved[0, 0] = moved[0, 1]  # a corner on another edge of its face
    first = corner.copy()
    first[corner == 0] = 1  # row 0 empty; its corners join row 1's
    shared = int(np.flatnonzero(np.bincount(corner[corner >= 0], minlength=n) == 2)[0])  # an edge of two faces
    twice = np.where(corner > shared, corner + 1, corner)
    twice.reshape(-1)[np.flatnonzero(corner.reshape(-1) == shared)[1]] = shared + 1  # its pair in two rows
    return {
        "floats": corner.astype(np.float32),
        "shape": corner[:, :2],
        "rows": corner[:-1],
        "negative": np.where(corner == corner.max(), -2, corner),
        "past the corners": np.where(corner == corner.max(), corner.size, corner),
        "unsorted": np.where(corner < 0, -1, rank[corner]).astype(np.int32),
        "reversed": np.where(corner < 0, -1, n - 1 - corner).astype(np.int32),
        "duplicate": twice,
        "unused row": np.where(corner < 0, -1, corner + 1).astype(np.int32),
        "wrong corner": moved,
        "empty first row": first,
        "merged edges": np.where(corner == 5, 6, corner),
        "int64 past int32": corner.astype(np.int64) + (1 << 33),
    }


@pytest.mark.parametrize("case", list(_corruptions(_with_edges(grid_mesh()))))
def test_bad_edges_are_refused_and_blender_computes_them(case, capfd):
    arrays = _with_edges(_relief())
    corner = _corruptions(arrays)[case]
    keep = ~(arrays["faces"][:, 0] == arrays["faces"][:, 1])
    with pytest.raises(ValueError):
        checked_edges(corner, arrays["faces"][keep], keep)
    computed = mb.build_mesh("computed", arrays["vertices"], arrays["faces"])
    given = mb.build_mesh("given", arrays["vertices"], arrays["faces"], corner_edge=corner)
    assert "edges were refused" in capfd.readouterr().err
    _assert_same(given, computed)


def test_the_rows_are_rebuilt_exactly():
    arrays = _with_edges(_relief())
    keep = ~(arrays["faces"][:, 0] == arrays["faces"][:, 1])
    edges, corner = checked_edges(arrays["corner_edge"], arrays["faces"][keep], keep)
    assert np.array_equal(edges, arrays["edges"]) and np.array_equal(corner, arrays["corner_edge"][keep])
    assert edges.dtype == np.int32 and edges.flags.c_contiguous and corner.flags.c_contiguous


def test_a_received_mesh_with_edges_becomes_an_object():
    arrays = _with_edges(grid_mesh())
    before = scene_snapshot()
    (obj,) = mb.add_result(bpy.context, [("grid", arrays)], None, BuildOptions(), mb.Placement())
    assert len(obj.data.edges) == len(arrays["edges"]) and scene_snapshot()["objects"] == before["objects"] + ["grid"]
    assert not obj.data.validate(verbose=False)


def test_random_damage_is_refused_or_harmless():
    """Flipped values anywhere in the corner edges: the check answers ValueError or the true arrays."""
    arrays = _with_edges(grid_mesh())
    faces = arrays["faces"]
    rng = np.random.default_rng(3)
    n = len(arrays["edges"])
    for _ in range(300):
        corner = arrays["corner_edge"].copy()
        flat = corner.reshape(-1)
        flat[rng.integers(len(flat))] = rng.choice([-1, 0, 1, n - 1, n, n + 1, corner.size,
                                                    int(rng.integers(-5, n + 5))])
        try:
            got = checked_edges(corner, faces, None)
        except ValueError:
            continue
        assert np.array_equal(got[0], arrays["edges"]) and np.array_equal(got[1], arrays["corner_edge"])
