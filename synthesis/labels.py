"""NoRLD geometry labels computed from a mesh: 64^3 occupancy and surface samples with normals.

Frame and grid: the decoder's unit cube [-0.5, 0.5]^3 in Blender's frame (+Z up; backend/mesh/export.py).
Voxel (i, j, k) of a resolution-R grid covers [-0.5 + i/R, -0.5 + (i+1)/R) along X (j: Y, k: Z), centre
-0.5 + (i + 0.5)/R, which is how the release turns sparse-structure coordinates into positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .mesh import Mesh

_JITTER = (1.3e-7, 2.9e-7)
"Column rays sit this far off the voxel centres in X and Y, so no ray passes exactly through a mesh edge."


@dataclass(frozen=True)
class Labels:
    solid: np.ndarray  # [R, R, R] bool: the voxel centre is inside the mesh
    surface: np.ndarray  # [R, R, R] bool: the surface passes through the voxel (the sparse structure)
    points: np.ndarray  # [N, 3] float32 surface samples
    normals: np.ndarray  # [N, 3] float32 unit outward normals at ``points``


def make_labels(mesh: Mesh, resolution: int, surface_points: int, rng: np.random.Generator) -> Labels:
    points, normals = sample_surface(mesh, surface_points, rng)
    return Labels(solid_occupancy(mesh, resolution), surface_occupancy(mesh, resolution, rng), points, normals)


def solid_occupancy(mesh: Mesh, resolution: int) -> np.ndarray:
    """[R, R, R] bool: voxel centres inside the closed mesh, by the parity of crossings along +Z columns."""
    r = resolution
    tri = mesh.triangles()  # [F, 3, 3]
    ix, iy, z = _column_hits(tri, r)  # one entry per (column, triangle) crossing
    k = np.clip(np.ceil((z + 0.5) * r - 0.5), 0, r).astype(np.int64)  # centres below the crossing: [0, k)
    counts = np.zeros((r, r, r + 1), np.int64)
    np.add.at(counts, (ix, iy, np.zeros_like(k)), 1)
    np.add.at(counts, (ix, iy, k), -1)
    crossings_above = np.cumsum(counts, axis=2)[:, :, :r]  # [R, R, R] crossings above each centre
    return (crossings_above % 2).astype(bool)


def _column_hits(tri: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each vertical column (through jittered voxel centres) crosses each triangle: ix, iy, z."""
    jitter = np.asarray(_JITTER)
    lo, hi = tri[:, :, :2].min(1), tri[:, :, :2].max(1)  # [F, 2]
    first = np.clip(np.ceil((lo - jitter + 0.5) * r - 0.5), 0, r).astype(np.int64)
    last = np.clip(np.floor((hi - jitter + 0.5) * r - 0.5), -1, r - 1).astype(np.int64)
    span = np.maximum(last - first + 1, 0)  # [F, 2] columns per triangle in X and Y
    per_face = span[:, 0] * span[:, 1]
    face = np.repeat(np.arange(len(tri)), per_face)  # [H] candidate (triangle, column) pairs
    local = np.arange(len(face)) - np.repeat(np.cumsum(per_face) - per_face, per_face)
    ix = first[face, 0] + local // np.maximum(span[face, 1], 1)
    iy = first[face, 1] + local % np.maximum(span[face, 1], 1)
    px = -0.5 + (ix + 0.5) / r + jitter[0]
    py = -0.5 + (iy + 0.5) / r + jitter[1]
    a, b, c = tri[face, 0], tri[face, 1], tri[face, 2]  # [H, 3]
    w0 = _edge(b, c, px, py)
    w1 = _edge(c, a, px, py)
    w2 = _edge(a, b, px, py)
    total = w0 + w1 + w2
    inside = (total != 0) & (((w0 >= 0) & (w1 >= 0) & (w2 >= 0)) | ((w0 <= 0) & (w1 <= 0) & (w2 <= 0)))
    safe = np.where(total == 0, 1.0, total)
    z = (w0 * a[:, 2] + w1 * b[:, 2] + w2 * c[:, 2]) / safe
    return ix[inside], iy[inside], z[inside]


def _edge(a: np.ndarray, b: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Twice the signed area of (a, b, p) in the XY plane: a barycentric weight of p's opposite corner."""
    return (b[:, 0] - a[:, 0]) * (py - a[:, 1]) - (b[:, 1] - a[:, 1]) * (px - a[:, 0])


def surface_occupancy(mesh: Mesh, resolution: int, rng: np.random.Generator,
                      samples_per_voxel: float = 16.0) -> np.ndarray:
    """[R, R, R] bool: voxels the surface passes through, from dense area-weighted samples and the vertices.

    Sampled, so a voxel the surface only grazes by a sliver can be missed; ``samples_per_voxel`` sets the
    density (samples per voxel-face area of surface).
    """
    area = float(mesh.face_areas().sum())
    count = int(min(4_000_000, max(10_000, area * resolution**2 * samples_per_voxel)))
    points, _ = sample_surface(mesh, count, rng)
    points = np.concatenate([points, mesh.vertices])
    index = np.clip(np.floor((points + 0.5) * resolution), 0, resolution - 1).astype(np.int64)
    grid = np.zeros((resolution,) * 3, bool)
    grid[tuple(index.T)] = True
    return grid


def sample_surface(mesh: Mesh, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` points uniformly by area and the unit normals of their faces: [N, 3], [N, 3] float32."""
    tri = mesh.triangles()
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # [F, 3], length = 2 * area
    area = np.linalg.norm(cross, axis=1)
    if len(tri) == 0 or area.sum() <= 0:
        raise ValueError("The mesh has no surface to sample.")
    face = rng.choice(len(tri), size=count, p=area / area.sum())
    u, v = rng.random(count), rng.random(count)
    flip = u + v > 1  # fold the unit square onto the triangle
    u, v = np.where(flip, 1 - u, u), np.where(flip, 1 - v, v)
    t = tri[face]
    points = t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])
    normals = cross[face] / np.maximum(area[face], 1e-30)[:, None]
    return points.astype(np.float32), normals.astype(np.float32)


def voxel_centres(resolution: int) -> np.ndarray:
    """[R] centre coordinates of one grid axis."""
    return -0.5 + (np.arange(resolution) + 0.5) / resolution
