"""Mesh cleanup users expect (the release has none): duplicates, floaters, hollow inner walls, winding,
holes, decimation, normals.

Plain functions on numpy arrays: vertices [V, 3] float32, faces [F, 3] int32 (counter-clockwise seen from
outside). Components are sets of faces connected through shared vertices.

Why inner shells: the decoder only covers a band of cubes around the surface and both extractors treat the
uncovered inside as outside (sdf +1, as the release), so a solid object comes out as a closed outer surface
plus a closed inward-facing wall around the hollow. ``remove_inner_shells`` drops such walls.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CleanupOptions:
    remove_floaters: bool = True
    "Drop components with under ``floater_fraction`` of the largest one's faces or area, and inner shells."
    floater_fraction: float = 0.01
    fill_holes: bool = False
    "Close boundary loops with trimesh (small holes; the extractors' meshes are normally closed already)."
    target_faces: int = 0
    "Decimate to about this many faces (0: keep all)."


def clean_mesh(vertices: np.ndarray, faces: np.ndarray,
               options: CleanupOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply ``options``; returns (vertices, faces, area-weighted unit vertex normals)."""
    v, f = merge_vertices(vertices, faces)
    comps = analyse(v, f)  # once: dropping whole components leaves the others' figures as they are
    v, f = orient_outward(v, f, comps)
    if options.remove_floaters:
        drop = comps.inner | small_components(comps, options.floater_fraction, options.floater_fraction)
        if drop.any():
            v, f = compact(v, f[~drop[comps.labels]])
    if options.fill_holes:
        v, f = fill_holes(v, f)
    if options.target_faces and len(f) > options.target_faces:
        v, f = decimate(v, f, options.target_faces)
    return v, f, vertex_normals(v, f)


def merge_vertices(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge vertices at identical positions, drop faces that became degenerate and unused vertices."""
    unique, inverse = np.unique(vertices.astype(np.float32), axis=0, return_inverse=True)
    f = inverse.reshape(-1)[faces]  # [F, 3]
    ok = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])
    return compact(unique, f[ok])


def compact(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop vertices no face uses; returns float32 vertices and int32 faces."""
    used, inverse = np.unique(faces.reshape(-1), return_inverse=True)
    return vertices[used].astype(np.float32), inverse.reshape(-1, 3).astype(np.int32)


def face_components(vertices: np.ndarray, faces: np.ndarray) -> tuple[int, np.ndarray]:
    """Number of components and the component label of each face [F]."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    a = np.concatenate([faces[:, 0], faces[:, 1]])
    b = np.concatenate([faces[:, 1], faces[:, 2]])
    graph = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(len(vertices), len(vertices)))
    count, vertex_label = connected_components(graph, directed=False)
    used, labels = np.unique(vertex_label[faces[:, 0]], return_inverse=True)
    return len(used), labels


def face_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """[F] triangle areas."""
    tri = vertices[faces].astype(np.float64)  # [F, 3, 3]
    return 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)


def component_volumes(vertices: np.ndarray, faces: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """Signed volume [C] of each component (positive for closed, outward-wound surfaces)."""
    tri = vertices[faces].astype(np.float64)  # [F, 3, 3]
    six_vol = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2]))  # [F]
    return np.bincount(labels, weights=six_vol, minlength=count) / 6.0


def closed_components(faces: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """[C] bool: every edge of the component is shared by exactly two of its faces."""
    a, b = faces.reshape(-1), np.roll(faces, -1, axis=1).reshape(-1)  # [3F] each corner -> the next
    n = np.int64(faces.max(initial=0)) + 1
    keys = np.minimum(a, b).astype(np.int64) * n + np.maximum(a, b)  # one int64 per undirected edge
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)  # 1-D: a plain sort
    open_faces = (counts[inverse] != 2).reshape(-1, 3).any(axis=1)  # [F]
    return np.bincount(labels, weights=open_faces, minlength=count) == 0


@dataclass
class Components:
    """What cleanup needs to know about each connected component, computed once."""

    count: int
    labels: np.ndarray  # [F] component of each face
    faces: np.ndarray  # [C] face count
    area: np.ndarray  # [C]
    volume: np.ndarray  # [C] signed
    closed: np.ndarray  # [C] bool
    inner: np.ndarray  # [C] bool: a hollow's inward wall (closed, negative, inside an outward one's box)


def analyse(vertices: np.ndarray, faces: np.ndarray) -> Components:
    count, labels = face_components(vertices, faces)
    volume = component_volumes(vertices, faces, labels, count)
    closed = closed_components(faces, labels, count)
    lo, hi = _component_boxes(vertices, faces, labels, count)
    outer = np.nonzero(closed & (volume > 0))[0]
    inner = np.zeros(count, bool)
    for c in np.nonzero(closed & (volume < 0))[0]:
        inner[c] = bool(((lo[outer] <= lo[c]).all(1) & (hi[outer] >= hi[c]).all(1)).any())
    return Components(count, labels, np.bincount(labels, minlength=count),
                      np.bincount(labels, weights=face_areas(vertices, faces), minlength=count),
                      volume, closed, inner)


def small_components(comps: Components, face_fraction: float, area_fraction: float) -> np.ndarray:
    """[C] bool: under ``face_fraction`` of the largest kept component's faces or ``area_fraction`` of its
    area (inner walls do not count as the largest)."""
    kept = ~comps.inner
    if not kept.any():
        return np.zeros(comps.count, bool)
    few = comps.faces < face_fraction * comps.faces[kept].max()
    return few | (comps.area < area_fraction * comps.area[kept].max())


def remove_small_components(vertices: np.ndarray, faces: np.ndarray, face_fraction: float,
                            area_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Drop components with fewer than ``face_fraction`` of the largest component's faces, or less than
    ``area_fraction`` of its area."""
    comps = analyse(vertices, faces)
    comps.inner[:] = False
    small = small_components(comps, face_fraction, area_fraction)
    return compact(vertices, faces[~small[comps.labels]]) if small.any() else (vertices, faces)


def remove_inner_shells(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop closed inward-facing components lying inside (by bounding box) an outward one: hollow walls."""
    comps = analyse(vertices, faces)
    return compact(vertices, faces[~comps.inner[comps.labels]]) if comps.inner.any() else (vertices, faces)


def orient_outward(vertices: np.ndarray, faces: np.ndarray, comps: Components | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Reverse closed components that are wound inward and not enclosed by another (inverted surfaces)."""
    comps = comps or analyse(vertices, faces)
    flip = (comps.volume < 0) & comps.closed & ~comps.inner
    if not flip.any():
        return vertices, faces
    f = faces.copy()
    rows = flip[comps.labels]
    f[rows] = f[rows][:, ::-1]
    return vertices, f


def _component_boxes(vertices: np.ndarray, faces: np.ndarray, labels: np.ndarray,
                     count: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-component bounding boxes ([C, 3] low, [C, 3] high): faces sorted by label, reduced per run."""
    tri = vertices[faces]  # [F, 3, 3]
    order = np.argsort(labels, kind="stable")
    starts = np.searchsorted(labels[order], np.arange(count))  # every label has at least one face
    return (np.minimum.reduceat(tri.min(axis=1)[order], starts, axis=0),
            np.maximum.reduceat(tri.max(axis=1)[order], starts, axis=0))


def fill_holes(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Close boundary loops (trimesh's fan filling of simple holes)."""
    import trimesh

    mesh = trimesh.Trimesh(vertices, faces, process=False)
    trimesh.repair.fill_holes(mesh)
    return np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int32)


def decimate(vertices: np.ndarray, faces: np.ndarray, target_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric decimation to about ``target_faces`` faces (fast-simplification)."""
    import fast_simplification

    reduction = 1.0 - target_faces / len(faces)
    v, f = fast_simplification.simplify(vertices, faces, target_reduction=float(np.clip(reduction, 0.0, 0.99)))
    return np.asarray(v, np.float32), np.asarray(f, np.int32)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals [V, 3] (the cross product's length is twice the face area)."""
    tri = vertices[faces]  # [F, 3, 3]
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # [F, 3], |n| = 2 * area
    corner = faces.reshape(-1)  # each face's normal goes to its three vertices
    spread = np.repeat(face_n, 3, axis=0)  # [3F, 3]
    normals = np.stack([np.bincount(corner, weights=spread[:, k], minlength=len(vertices)) for k in range(3)], 1)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return (normals / np.maximum(length, 1e-12)).astype(np.float32)
