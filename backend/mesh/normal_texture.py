"""A camera-space normal map turned into the tangent-space normal texture of a mesh that is UV-mapped by
projecting the image onto it (the relief engine's front surface).

Why a conversion: glTF's ``normalTexture`` and Blender's Normal Map node (Tangent) read a texel as
``(x, y, z)`` in the surface's own frame, T = the direction of increasing u, B = the direction of
increasing v (image up), N = the interpolated vertex normal; the shading normal is ``x T + y B + z N``.
The predicted map is camera space (+X right, +Y up, +Z to the viewer). The two agree only where the surface
faces the camera squarely; on a relief whose front is tilted by its own depth, reading the camera-space
map as tangent space would add the tilt twice. So every texel covered by a textured face is rewritten as
``(n . T, n . B, n . N)`` with the frame a renderer builds there: the shading normal is then the predicted
normal again, and the texture holds only the detail the geometry does not (flat ``(0, 0, 1)`` where the mesh
already has it). Texels outside the mask or outside every textured face are flat.

The frame follows MikkTSpace closely (per-vertex tangents from the faces' UV gradients, orthogonalised
against the vertex normal, B = sign * N x T), which is what Blender and glTF viewers compute when a file
carries no tangents; the small remaining difference is measured in tests/blender/test_mesh_files.py.
"""

from __future__ import annotations

import numpy as np

from .shading import ShadedMesh

MAX_CANDIDATES = 1 << 22
"Texel candidates tested at once (memory bound of the rasterizer)."


def camera_to_mesh_frame(n: np.ndarray) -> np.ndarray:
    """Camera-space vectors [..., 3] (+X right, +Y up, +Z to the viewer) -> the mesh frame (Blender's, the
    object facing -Y): (x, y, z) -> (x, -z, y)."""
    return np.stack([n[..., 0], -n[..., 2], n[..., 1]], axis=-1)


def tangent_space_texture(mesh: ShadedMesh, textured: np.ndarray, camera_normals: np.ndarray,
                          mask: np.ndarray) -> np.ndarray:
    """Unit tangent-space normals [H, W, 3] (OpenGL: +Y = image up) for the texture ``mesh.uvs`` index.

    ``camera_normals`` [H, W, 3] and ``mask`` [H, W] are the predicted map over the same frame as the UVs
    (UV (0, 0) = its bottom-left corner, (1, 1) = its top-right); ``textured`` [F] marks the faces that
    take the texture.
    """
    if mesh.uvs is None:
        raise ValueError("the mesh has no UVs")
    h, w = mask.shape
    out = np.zeros((h, w, 3), np.float32)
    out[..., 2] = 1.0
    faces = mesh.faces[textured].astype(np.int64)
    if not len(faces):
        return out
    tangents, signs = _tangent_frame(mesh, faces)
    world = camera_to_mesh_frame(np.asarray(camera_normals, np.float32))  # [H, W, 3]
    for face_index, rows, cols, bary in _rasterize(mesh.uvs, faces, (h, w)):
        corner = faces[face_index]  # [K, 3]
        n = _unit(np.einsum("kc,kcd->kd", bary, mesh.normals[corner]))
        t = np.einsum("kc,kcd->kd", bary, tangents[corner])
        t = _unit(t - np.einsum("kd,kd->k", t, n)[:, None] * n)
        b = signs[face_index, None] * np.cross(n, t)
        m = world[rows, cols]  # [K, 3]
        local = np.stack([np.einsum("kd,kd->k", m, t), np.einsum("kd,kd->k", m, b),
                          np.maximum(np.einsum("kd,kd->k", m, n), 0.0)], axis=1)
        local = _unit(local)
        local[~mask[rows, cols]] = (0.0, 0.0, 1.0)
        out[rows, cols] = local
    return out


def _tangent_frame(mesh: ShadedMesh, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-vertex tangents [V, 3] (area-weighted, from the textured faces) and the bitangent sign [F] of
    each face (+1 unless its UVs are mirrored relative to its winding)."""
    assert mesh.uvs is not None
    p = mesh.vertices[faces].astype(np.float64)  # [F, 3, 3]
    uv = mesh.uvs[faces].astype(np.float64)  # [F, 3, 2]
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    d1, d2 = uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0]
    r = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]  # [F] twice the signed UV area
    r = np.where(np.abs(r) > 1e-30, r, 1e-30)[:, None]
    t = (e1 * d2[:, 1:] - e2 * d1[:, 1:]) / r  # dP/du
    b = (e2 * d1[:, :1] - e1 * d2[:, :1]) / r  # dP/dv
    normal = np.cross(e1, e2)  # [F, 3], length = twice the area
    signs = np.where(np.einsum("fd,fd->f", np.cross(normal, t), b) < 0.0, -1.0, 1.0)
    weight = np.linalg.norm(normal, axis=1, keepdims=True)
    per_corner = np.repeat(_unit(t) * weight, 3, axis=0)  # [3F, 3]
    corners, count = faces.ravel(), len(mesh.vertices)
    tangents = np.stack([np.bincount(corners, per_corner[:, i], minlength=count) for i in range(3)], axis=1)
    return tangents.astype(np.float32), signs.astype(np.float32)


def _rasterize(uvs: np.ndarray, faces: np.ndarray, shape: tuple[int, int]):  # noqa: ANN202 - a generator
    """Yield (face index [K], row [K], col [K], barycentrics [K, 3]) for the texel centres inside each face.

    Texel (r, c) has its centre at u = (c + 0.5) / W, v = 1 - (r + 0.5) / H. Faces are processed in groups
    of similar size, so each group tests a small square of candidate texels per face.
    """
    h, w = shape
    px = uvs[faces].astype(np.float64) * (w, -h) + (-0.5, h - 0.5)  # [F, 3, 2] (col, row) of each corner
    lo = np.ceil(px.min(axis=1)).astype(np.int64)  # [F, 2]
    hi = np.floor(px.max(axis=1)).astype(np.int64)
    extent = np.max(hi - lo + 1, axis=1)  # [F]
    size = 1
    while size < 2 * max(int(extent.max()), 1):
        group = np.nonzero((extent <= size) & (extent > size // 2) | ((size == 1) & (extent <= 1)))[0]
        step = max(1, MAX_CANDIDATES // (size * size))
        for start in range(0, len(group), step):
            yield from _cover(px, lo, group[start:start + step], size, (h, w))
        size *= 2


def _cover(px: np.ndarray, lo: np.ndarray, group: np.ndarray, size: int, shape: tuple[int, int]):  # noqa: ANN202
    if not len(group):
        return
    h, w = shape
    offset = np.stack(np.meshgrid(np.arange(size), np.arange(size), indexing="xy"), axis=-1).reshape(-1, 2)
    cand = lo[group, None, :] + offset[None]  # [G, S*S, 2] (col, row)
    a, b, c = (px[group, i, None, :] for i in range(3))  # [G, 1, 2]
    area = _edge(a, b, c)  # [G, 1]
    real = np.abs(area) > 1e-12  # [G, 1]: a degenerate UV triangle covers no texel
    area = np.where(real, area, 1.0)
    w0, w1, w2 = _edge(b, c, cand) / area, _edge(c, a, cand) / area, _edge(a, b, cand) / area
    inside = (w0 >= -1e-9) & (w1 >= -1e-9) & (w2 >= -1e-9) & real
    inside &= (cand[..., 0] >= 0) & (cand[..., 0] < w) & (cand[..., 1] >= 0) & (cand[..., 1] < h)
    g, k = np.nonzero(inside)
    bary = np.stack([w0[g, k], w1[g, k], w2[g, k]], axis=1)
    yield group[g], cand[g, k, 1], cand[g, k, 0], bary


def _edge(a: np.ndarray, b: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Twice the signed area of (a, b, p) over the last axis (x, y)."""
    return (b[..., 0] - a[..., 0]) * (p[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (p[..., 0] - a[..., 0])


def _unit(v: np.ndarray) -> np.ndarray:
    length = np.linalg.norm(v, axis=-1, keepdims=True)
    return (v / np.maximum(length, 1e-12)).astype(np.float32)


def covered_texels(uvs: np.ndarray, faces: np.ndarray, shape: tuple[int, int]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every texel centre inside a face's UV triangle: (face index [K], row [K], col [K], barycentrics [K, 3]),
    the texel layout of ``tangent_space_texture`` (for the bakers of ``backend/bake``)."""
    parts = list(_rasterize(uvs, faces, shape))
    if not parts:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty, np.zeros((0, 3))
    return tuple(np.concatenate(p) for p in zip(*parts))  # type: ignore[return-value]


def tangent_frame(mesh: ShadedMesh, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-vertex tangents [V, 3] (unnormalised) and the bitangent sign [F] of ``faces`` (``_tangent_frame``)."""
    return _tangent_frame(mesh, faces)
