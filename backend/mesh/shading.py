"""Per-vertex shading data for mesh files: normals with sharp edges split, and which faces take textures.

Mesh files carry one normal per vertex, so a sharp edge (a relief's rim between the front and the side
walls) needs its vertices duplicated: ``split_sharp_edges`` does what Blender's "smooth by angle" does,
as geometry. Faces whose UV triangle is wound counter-clockwise (u right, v up) see their texture the right
way round and take it; mirrored or zero-area UV faces (a relief's back and side walls, which reuse the
front's image coordinates) take a plain material instead (``textured_faces``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHARP_DEGREES = 30.0
"Edges between faces more than this many degrees apart are sharp (the add-on's Auto Smooth default)."
MIN_UV_AREA = 1e-12
"UV triangles with a smaller signed area (in units of the whole texture) count as degenerate."


@dataclass
class ShadedMesh:
    """A mesh ready for a file: one normal (and UV) per vertex, sharp edges already split."""

    vertices: np.ndarray  # [V, 3] float32
    faces: np.ndarray  # [F, 3] int32
    normals: np.ndarray  # [V, 3] float32, unit
    uvs: np.ndarray | None = None  # [V, 2] float32, v up (Blender's convention)


def shaded_mesh(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray | None = None,
                uvs: np.ndarray | None = None, sharp_degrees: float = SHARP_DEGREES) -> ShadedMesh:
    """The mesh with its own ``normals`` when given, else with normals computed and sharp edges split."""
    v = np.asarray(vertices, np.float32)
    f = np.asarray(faces, np.int64)
    uv = None if uvs is None else np.asarray(uvs, np.float32)
    if normals is not None:
        return ShadedMesh(v, f.astype(np.int32), _unit(np.asarray(normals, np.float64)), uv)
    return split_sharp_edges(v, f, uv, sharp_degrees)


def split_sharp_edges(vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray | None = None,
                      sharp_degrees: float = SHARP_DEGREES) -> ShadedMesh:
    """Area-weighted normals that are smooth across edges under ``sharp_degrees`` and break at the others
    and, with ``uvs``, at every edge between a textured face and one that is not (``textured_faces``: a
    relief's rim, where the front meets the side walls, is a crease whatever its angle).

    The corners of one vertex that are connected through smooth edges become one output vertex (a
    fan cut by sharp edges gives one vertex per piece); faces keep their order and winding.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    f = np.asarray(faces, np.int64)
    tri = np.asarray(vertices, np.float64)[f]  # [F, 3, 3]
    weighted = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # [F, 3], length = twice the area
    kind = None if uvs is None else textured_faces(f, uvs)
    a, b = _smooth_corner_pairs(f, _unit(weighted), np.cos(np.radians(sharp_degrees)), kind)
    corners = f.size
    graph = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(corners, corners))
    count, label = connected_components(graph, directed=False)  # [3F] -> output vertex
    per_corner = np.repeat(weighted, 3, axis=0)  # [3F, 3]
    sums = np.stack([np.bincount(label, per_corner[:, i], minlength=count) for i in range(3)], axis=1)
    first = np.zeros(count, np.int64)
    first[label[::-1]] = np.arange(corners)[::-1]  # a corner of each output vertex
    source = f.ravel()[first]  # [count] the input vertex each output vertex copies
    new_uvs = None if uvs is None else np.asarray(uvs, np.float32)[source]
    return ShadedMesh(np.asarray(vertices, np.float32)[source], label.reshape(-1, 3).astype(np.int32),
                      _unit(sums), new_uvs)


def _smooth_corner_pairs(faces: np.ndarray, face_normals: np.ndarray, cos_limit: float,
                         kind: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of corners (indices into ``faces.ravel()``) of one vertex across each smooth edge (an edge
    between faces of different ``kind`` [F] is never smooth)."""
    start = faces.ravel()  # corner c = 3 * face + k sits on vertex start[c]
    nxt = np.arange(faces.size).reshape(-1, 3)[:, [1, 2, 0]].ravel()  # the corner after c in its face
    end = start[nxt]
    key = np.minimum(start, end) * (int(start.max()) + 1) + np.maximum(start, end)
    order = np.argsort(key)
    same = key[order[1:]] == key[order[:-1]]
    h1, h2 = order[:-1][same], order[1:][same]  # half-edges on one edge (consecutive ones where non-manifold)
    smooth = np.einsum("ij,ij->i", face_normals[h1 // 3], face_normals[h2 // 3]) >= cos_limit
    if kind is not None:
        smooth &= kind[h1 // 3] == kind[h2 // 3]
    h1, h2 = h1[smooth], h2[smooth]
    aligned = start[h1] == start[h2]  # same direction: a winding flip; opposite: the usual case
    a = np.concatenate([h1, nxt[h1]])
    b = np.concatenate([np.where(aligned, h2, nxt[h2]), np.where(aligned, nxt[h2], h2)])
    return a, b


def textured_faces(faces: np.ndarray, uvs: np.ndarray) -> np.ndarray:
    """[F] bool: faces whose UV triangle is counter-clockwise (u right, v up) and not degenerate."""
    t = np.asarray(uvs, np.float64)[np.asarray(faces, np.int64)]  # [F, 3, 2]
    e1, e2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    return 0.5 * (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]) > MIN_UV_AREA


def _unit(v: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows become +Z); float32."""
    length = np.linalg.norm(v, axis=-1, keepdims=True)
    out = np.where(length > 1e-20, v / np.maximum(length, 1e-20), np.array([0.0, 0.0, 1.0]))
    return out.astype(np.float32)
