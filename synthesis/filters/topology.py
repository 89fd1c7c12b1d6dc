"""Topology filters: closed and manifold, no degenerate faces, no self-intersections."""

from __future__ import annotations

import numpy as np

from ..config import FilterConfig
from ..mesh import Mesh
from .base import FilterResult, verdict


def manifold_filter(mesh: Mesh, cfg: FilterConfig) -> FilterResult:
    """Every edge is shared by exactly two faces that traverse it in opposite directions (closed, oriented)."""
    return verdict("manifold", open_edge_count(mesh.faces), cfg.max_open_edges,
                   open_edge_count(mesh.faces) <= cfg.max_open_edges, "open, non-manifold or flipped edges:")


def open_edge_count(faces: np.ndarray) -> int:
    """Undirected edges not used exactly once in each direction."""
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])  # [3F, 2]
    key_fwd = directed[:, 0] * (int(faces.max()) + 1) + directed[:, 1]
    key_rev = directed[:, 1] * (int(faces.max()) + 1) + directed[:, 0]
    fwd, fwd_count = np.unique(key_fwd, return_counts=True)
    bad = set(fwd[fwd_count != 1].tolist())  # an edge walked twice the same way: flipped or non-manifold
    present = np.isin(key_rev, fwd)
    bad.update(key_fwd[~present].tolist())  # no twin: a boundary edge
    n = int(faces.max()) + 1
    return len({min(k // n, k % n) * n + max(k // n, k % n) for k in bad})


def degenerate_filter(mesh: Mesh, cfg: FilterConfig) -> FilterResult:
    """Faces with a repeated corner or (almost) no area."""
    f = mesh.faces
    repeated = (f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 2] == f[:, 0])
    count = int((repeated | (mesh.face_areas() < cfg.min_face_area)).sum())
    return verdict("degenerate", count, cfg.max_degenerate_faces, count <= cfg.max_degenerate_faces,
                   "degenerate faces:")


def self_intersection_filter(mesh: Mesh, cfg: FilterConfig) -> FilterResult:
    count = self_intersections(mesh)
    return verdict("self_intersection", count, cfg.max_self_intersections,
                   count <= cfg.max_self_intersections, "intersecting face pairs:")


def self_intersections(mesh: Mesh, chunk: int = 200_000) -> int:
    """Pairs of faces sharing no vertex where an edge of one crosses the other's interior.

    Candidates are faces whose centroids are closer than twice the largest centroid-to-corner distance
    (a k-d tree); each pair runs six segment-triangle tests. Coplanar overlaps are not counted.
    """
    from scipy.spatial import cKDTree

    tri = mesh.triangles()  # [F, 3, 3]
    centroid = tri.mean(1)
    reach = float(np.linalg.norm(tri - centroid[:, None], axis=2).max())
    pairs = cKDTree(centroid).query_pairs(2.0 * reach, output_type="ndarray")  # [P, 2]
    faces = mesh.faces
    shared = (faces[pairs[:, 0], :, None] == faces[pairs[:, 1], None, :]).any(axis=(1, 2))
    pairs = pairs[~shared]
    hits = 0
    for start in range(0, len(pairs), chunk):
        a, b = tri[pairs[start:start + chunk, 0]], tri[pairs[start:start + chunk, 1]]
        hits += int((_edges_cross(a, b) | _edges_cross(b, a)).sum())
    return hits


def _edges_cross(a: np.ndarray, b: np.ndarray, eps: float = 1e-9) -> np.ndarray:
    """[P] whether any edge of triangles ``a`` [P, 3, 3] passes through the interior of triangles ``b``."""
    out = np.zeros(len(a), bool)
    e1, e2 = b[:, 1] - b[:, 0], b[:, 2] - b[:, 0]
    for i, j in ((0, 1), (1, 2), (2, 0)):
        origin, d = a[:, i], a[:, j] - a[:, i]  # the segment origin + t d, t in [0, 1]
        h = np.cross(d, e2)
        det = np.einsum("ij,ij->i", e1, h)
        ok = np.abs(det) > eps * np.linalg.norm(d, axis=1) * np.linalg.norm(e1, axis=1)
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        s = origin - b[:, 0]
        u = np.einsum("ij,ij->i", s, h) * inv
        q = np.cross(s, e1)
        v = np.einsum("ij,ij->i", d, q) * inv
        t = np.einsum("ij,ij->i", e2, q) * inv
        out |= ok & (u > eps) & (v > eps) & (u + v < 1 - eps) & (t > eps) & (t < 1 - eps)
    return out
