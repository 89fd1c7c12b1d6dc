"""The backend's edges in real Blender: a mesh built with them equals one Blender computes its edges for,
and edges that do not check out are refused (Blender computes its own; nothing half-built stays)."""

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
    return dict(arrays, edges=edges, corner_edge=corner)


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
    given = mb.build_mesh("given", arrays["vertices"], arrays["faces"], shading, normals, edges=arrays["edges"],
                          corner_edge=arrays["corner_edge"])
    assert "refused" not in capfd.readouterr().err and len(given.edges) == len(arrays["edges"])
    assert (arrays["corner_edge"][-1] == -1).all(), "the degenerate face has no edges"
    assert shading != "AUTO" or _summary(given)["sharp"], "the rim has sharp edges"
    _assert_same(given, computed)


def _corruptions(arrays: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    edges, corner = arrays["edges"], arrays["corner_edge"]
    swapped = edges.copy()
    swapped[0] = swapped[0, ::-1]
    shuffled = edges[::-1].copy()  # consistent corners, but not sorted
    moved = corner.copy()
    moved[0, 0] = moved[0, 1]  # a corner on another edge of its face
    extra = np.concatenate([edges, [[edges[-1, 0], len(arrays["vertices"]) - 1]]]).astype(np.int32)
    return {
        "floats": (edges.astype(np.float32), corner),
        "shape": (edges[:, :1], corner),
        "rows": (edges, corner[:-1]),
        "vertex range": (np.where(edges == edges.max(), len(arrays["vertices"]), edges), corner),
        "lo > hi": (swapped, corner),
        "unsorted": (shuffled, np.where(corner < 0, -1, len(edges) - 1 - corner).astype(np.int32)),
        "duplicate": (np.concatenate([edges[:1], edges]).astype(np.int32), np.where(corner < 0, -1, corner + 1)),
        "wrong corner": (edges, moved),
        "unused edge": (extra, corner),
        "corner range": (edges, np.where(corner == corner.max(), len(edges), corner)),
        "int64 past int32": (edges.astype(np.int64) + (1 << 33), corner),
    }


@pytest.mark.parametrize("case", list(_corruptions(_with_edges(grid_mesh()))))
def test_bad_edges_are_refused_and_blender_computes_them(case, capfd):
    arrays = _with_edges(_relief())
    edges, corner = _corruptions(arrays)[case]
    with pytest.raises(ValueError):
        keep = ~(arrays["faces"][:, 0] == arrays["faces"][:, 1])
        checked_edges(edges, corner, arrays["faces"][keep], keep, len(arrays["vertices"]))
    computed = mb.build_mesh("computed", arrays["vertices"], arrays["faces"])
    given = mb.build_mesh("given", arrays["vertices"], arrays["faces"], edges=edges, corner_edge=corner)
    assert "edges were refused" in capfd.readouterr().err
    _assert_same(given, computed)


def test_a_received_mesh_with_edges_becomes_an_object():
    arrays = _with_edges(grid_mesh())
    before = scene_snapshot()
    (obj,) = mb.add_result(bpy.context, [("grid", arrays)], None, BuildOptions(), mb.Placement())
    assert len(obj.data.edges) == len(arrays["edges"]) and scene_snapshot()["objects"] == before["objects"] + ["grid"]
    assert not obj.data.validate(verbose=False)


def test_random_damage_is_refused_or_harmless():
    """Flipped values anywhere in the arrays: the check answers ValueError or arrays equal to the true ones."""
    arrays = _with_edges(grid_mesh())
    faces, n = arrays["faces"], len(arrays["vertices"])
    rng = np.random.default_rng(3)
    for _ in range(300):
        edges, corner = arrays["edges"].copy(), arrays["corner_edge"].copy()
        target = edges if rng.random() < 0.5 else corner
        flat = target.reshape(-1)
        flat[rng.integers(len(flat))] = rng.choice([-1, 0, 1, n - 1, n, len(edges), int(flat.max()) + 1,
                                                    int(rng.integers(-5, n + 5))])
        try:
            got = checked_edges(edges, corner, faces, None, n)
        except ValueError:
            continue
        assert np.array_equal(got[0], arrays["edges"]) and np.array_equal(got[1], arrays["corner_edge"])
