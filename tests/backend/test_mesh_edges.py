"""The edges the backend sends Blender (``backend/mesh/edges.py``): equal to a plain unique-edge computation."""

from __future__ import annotations

import numpy as np
import pytest

from backend import protocol as P
from backend.mesh import edges as E
from backend.relief.mesh import relief_mesh


def _reference(faces: np.ndarray) -> tuple[set[tuple[int, int]], list[tuple[int, int] | None]]:
    """Edge set and each corner's edge as vertex pairs, one Python loop (None on degenerate faces)."""
    pairs: set[tuple[int, int]] = set()
    corners: list[tuple[int, int] | None] = []
    for face in faces.tolist():
        degenerate = len(set(face)) < 3
        for j in range(3):
            a, b = face[j], face[(j + 1) % 3]
            key = (min(a, b), max(a, b))
            corners.append(None if degenerate else key)
            if not degenerate:
                pairs.add(key)
    return pairs, corners


@pytest.fixture(autouse=True, params=["compiled", "sparse", "slots"])
def way(request, monkeypatch):
    """Every test runs with the compiled bucket pass (Numba; for any size here), SciPy's sparse matrix and
    the slot rounds (the path without either)."""
    if request.param == "compiled":
        pytest.importorskip("numba")
        monkeypatch.setattr(E, "COMPILED_MIN_CORNERS", 0)
    else:
        monkeypatch.setattr(E, "COMPILED_MIN_CORNERS", 1 << 62)
    if request.param == "slots":
        monkeypatch.setattr(E, "_has_scipy", lambda: False)
    return request.param


def _assert_matches(faces: np.ndarray, n_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    edges, corner = E.mesh_edges(faces, n_vertices)
    pairs, corners = _reference(faces)
    assert edges.dtype == np.int32 and corner.dtype == np.int32 and corner.shape == faces.shape
    assert [tuple(e) for e in edges.tolist()] == sorted(pairs, key=lambda p: (p[1], p[0]))  # by (hi, lo), lo < hi
    assert edges.flags.c_contiguous and (np.diff(edges.view("<i8").reshape(-1)) > 0).all()  # the add-on's check
    got = [None if c < 0 else tuple(edges[c].tolist()) for c in corner.reshape(-1)]
    assert got == corners
    return edges, corner


def _grid(n: int) -> np.ndarray:
    idx = np.arange((n + 1) * (n + 1)).reshape(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    return np.concatenate([np.stack([a, c, d], -1).reshape(-1, 3), np.stack([a, d, b], -1).reshape(-1, 3)])


def test_grid_edges():
    _assert_matches(_grid(7), 64)


def test_relief_mesh_edges():
    cells = np.zeros((30, 36), bool)
    cells[4:26, 5:18] = True
    cells[8:16, 20:32] = True
    cells[17, 19] = cells[18, 20] = True  # a saddle square
    mesh = relief_mesh(np.random.default_rng(0).random(cells.shape) * 0.1, cells, 0.05)
    edges, _ = _assert_matches(mesh.faces, len(mesh.vertices))
    assert len(edges) * 2 == mesh.faces.size  # closed: every edge has two faces


def test_marching_cubes_edges():
    from skimage.measure import marching_cubes

    field = np.random.default_rng(1).random((9, 8, 7)) - 0.5  # many components, ambiguous cubes
    verts, faces, _, _ = marching_cubes(field, level=0.0)
    _assert_matches(faces.astype(np.int32), len(verts))


def test_any_triangles_even_degenerate_ones():
    rng = np.random.default_rng(2)
    faces = rng.integers(0, 12, (200, 3)).astype(np.int32)  # non-manifold, repeated, degenerate faces
    _, corner = _assert_matches(faces, 12)
    assert (corner[faces[:, 0] == faces[:, 1]] == -1).all()
    _assert_matches(np.zeros((0, 3), np.int32), 0)


def test_a_vertex_with_too_many_edges_takes_the_sort(monkeypatch, way):
    fan = np.array([[10, k, k + 1] for k in range(9)], np.int32)  # vertex 10 has 10 lower neighbours
    monkeypatch.setattr(E, "MAX_ROUNDS", 4)
    _assert_matches(fan, 11)
    big_fan = np.array([[100, k, k + 1] for k in range(99)], np.int32)  # a bucket past SHORT_ROW
    _assert_matches(big_fan[np.random.default_rng(4).permutation(99)], 101)


def test_faces_past_the_vertices_are_refused():
    for faces in ([[0, 1, 5]], [[0, 1, 2], [2, -1, 0]], [[3, 1, 2]]):
        with pytest.raises(ValueError, match="past the vertex"):
            E.mesh_edges(np.array(faces, np.int32), 3)


def test_corner_edges_travel_with_the_mesh():
    faces = _grid(3).astype(np.int32)
    verts = np.zeros((16, 3), np.float32)
    _, corner = E.mesh_edges(faces, 16)
    frames = list(P.mesh_frames(0, "m", {"vertices": verts, "faces": faces, "corner_edge": corner}, chunk_bytes=40))
    assembly = P.MeshAssembly(frames[0])
    for chunk in frames[1:]:
        assembly.add(chunk)
    out = assembly.finish()
    assert set(out) == {"vertices", "faces", "corner_edge"} and np.array_equal(out["corner_edge"], corner)


def test_the_edge_rows_do_not_travel():
    start = P.MeshStart(n_vertices=3, n_faces=1, checksums={"vertices": 0, "faces": 0, "edges": 0})
    with pytest.raises(P.ProtocolError, match="nothing else"):
        P.MeshAssembly(start)


def test_a_compiled_pass_that_fails_leaves_it_to_scipy(monkeypatch, capfd, way):
    def broken(*args):  # noqa: ANN002, ANN202 - the kernel's arguments
        raise RuntimeError("no LLVM here")

    monkeypatch.setattr(E, "_compiled", lambda: broken)
    monkeypatch.setattr(E, "_broken", [])
    monkeypatch.setattr(E, "COMPILED_MIN_CORNERS", 0)
    _assert_matches(_grid(4), 25)
    _assert_matches(_grid(3), 16)
    assert capfd.readouterr().err.count("compiled edge pass failed") == 1, "said once, then not tried again"
    E.warm_compiled()  # a no-op now


def test_the_warm_up_loads_the_compiled_pass(monkeypatch):
    calls = []
    monkeypatch.setattr(E, "_compiled", lambda: lambda tris, n, *scratch: calls.append(n) or 3)
    monkeypatch.setattr(E, "_broken", [])
    E.warm_compiled()
    assert calls == [3]


def test_the_kernel_refuses_scratch_of_the_wrong_size():
    pytest.importorskip("numba")
    from backend.mesh.edges_kernel import bucket_edges

    tris = np.array([[0, 1, 2]], np.int32)
    with pytest.raises(ValueError, match="wrong size"):
        bucket_edges(tris, 3, np.empty(3, np.int32), np.empty(3, np.int64), np.empty(3, np.int32))
    assert bucket_edges(tris, 3, np.empty(4, np.int32), np.empty(3, np.int64), np.empty(3, np.int32)) == 3
