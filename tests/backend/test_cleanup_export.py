"""Mesh cleanup (duplicates, floaters, inner walls, winding, holes, decimation, normals) and file export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from backend.errors import BadInput
from backend.mesh.cleanup import (
    CleanupOptions,
    clean_mesh,
    fill_holes,
    merge_vertices,
    orient_outward,
    remove_inner_shells,
    remove_small_components,
    vertex_normals,
)
from backend.mesh.export import EXPORT_FORMATS, export_mesh, from_gltf_frame, to_gltf_frame


def arrays(mesh: trimesh.Trimesh) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int32)


def ball(radius: float, subdivisions: int = 3, at: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> trimesh.Trimesh:
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    mesh.apply_translation(at)
    return mesh


def test_cleanup_drops_floaters_and_inner_shells_and_decimates():
    inner = ball(0.2)
    inner.invert()  # a hollow's wall faces inward
    both = trimesh.util.concatenate([ball(0.3, 4), ball(0.01, 0, (0.45, 0, 0)), inner])
    v, f, n = clean_mesh(*arrays(both), CleanupOptions(target_faces=1000))
    out = trimesh.Trimesh(v, f)
    assert len(out.split()) == 1 and out.volume > 0 and len(f) <= 1100
    assert np.allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-5)


def test_small_components_by_faces_and_by_area():
    big, dense_speck = ball(0.3, 2), ball(0.02, 4, (0.45, 0, 0))  # the speck has more faces but tiny area
    v, f = arrays(trimesh.util.concatenate([big, dense_speck]))
    kept_v, kept_f = remove_small_components(v, f, face_fraction=0.01, area_fraction=0.01)
    assert len(kept_f) == len(big.faces) and np.abs(kept_v).max() <= 0.31
    assert len(remove_small_components(v, f, 0.01, 0.0)[1]) == len(f)  # by faces alone both stay


def test_inner_shell_only_when_enclosed_and_inverted_outer_surfaces_are_flipped():
    lone = ball(0.2, 2, (0.6, 0, 0))
    lone.invert()  # an inverted surface that encloses nothing: flipped, not dropped
    inner = ball(0.1, 2)
    inner.invert()
    v, f = arrays(trimesh.util.concatenate([ball(0.3, 2), inner, lone]))
    v, f = remove_inner_shells(v, f)
    assert len(f) == 2 * 320
    v, f = orient_outward(v, f)
    parts = trimesh.Trimesh(v, f).split()
    assert len(parts) == 2 and all(p.volume > 0 for p in parts)


def test_merge_vertices_and_degenerate_faces():
    soup = ball(0.3, 2)
    v = soup.vertices[soup.faces].reshape(-1, 3).astype(np.float32)  # every face with its own vertices
    f = np.arange(len(v), dtype=np.int32).reshape(-1, 3)
    f = np.concatenate([f, [[0, 0, 1]]])  # a degenerate face
    mv, mf = merge_vertices(v, f)
    assert len(mv) == len(soup.vertices) and len(mf) == len(soup.faces)
    assert trimesh.Trimesh(mv, mf, process=False).is_watertight


def test_fill_holes_closes_a_missing_face():
    v, f = arrays(ball(0.3, 2))
    v, f = fill_holes(v, f[1:])
    assert trimesh.Trimesh(v, f, process=False).is_watertight


def test_vertex_normals_point_outward_on_a_sphere():
    s = ball(1.0)
    n = vertex_normals(*arrays(s))
    assert (np.einsum("ij,ij->i", n, s.vertices / np.linalg.norm(s.vertices, axis=1, keepdims=True)) > 0.99).all()


def test_vertex_normals_are_area_weighted():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0.1]], np.float32)
    f = np.array([[0, 1, 2], [0, 3, 1]], np.int32)  # big face normal +z, small face (area 0.05) normal +y
    n = vertex_normals(v, f)[0]
    expected = np.array([0, 0.1, 1.0]) / np.linalg.norm([0, 0.1, 1.0])
    assert np.allclose(n, expected, atol=1e-6)


def test_gltf_frame_is_the_releases_pose():
    p = np.array([[1.0, 2.0, 3.0]], np.float32)
    assert to_gltf_frame(p).tolist() == [[1.0, 3.0, -2.0]]  # (x, y, z) -> (x, z, -y): +Z up becomes +Y up
    assert np.array_equal(from_gltf_frame(to_gltf_frame(p)), p)


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_export_round_trip(tmp_path: Path, fmt: str):
    v, f = arrays(ball(0.3, 1, (0.1, 0.2, 0.05)))
    path = export_mesh(v, f, tmp_path / f"mesh.{fmt}", normals=vertex_normals(v, f))
    loaded = trimesh.load(path, force="mesh")
    expected = to_gltf_frame(v) if fmt == "glb" else v
    assert np.allclose(np.sort(loaded.vertices, axis=0), np.sort(expected, axis=0), atol=1e-5)
    assert len(loaded.faces) == len(f) and loaded.volume > 0  # winding survives, no mirroring


def test_export_rejects_unknown_formats(tmp_path: Path):
    v, f = arrays(ball(0.3, 0))
    with pytest.raises(BadInput):
        export_mesh(v, f, tmp_path / "mesh.fbx")
