"""Signed distance fields in numpy: primitives, CSG, bevels, noise, and meshing by marching cubes.

Every field maps points [N, 3] (Blender frame, +Z up) to signed distances [N] (negative inside). Hard-
surface and organic generators build their shapes from these; marching cubes on a padded grid turns a
field into a closed, consistently oriented triangle mesh, which is why booleans never fail here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Field = Callable[[np.ndarray], np.ndarray]
"points [N, 3] float -> signed distance [N] (negative inside)."


# ------------------------------------------------------------------------------------------ primitives


def sphere(center: tuple[float, float, float], radius: float) -> Field:
    c = np.asarray(center, np.float64)
    return lambda p: np.linalg.norm(p - c, axis=1) - radius


def box(center: tuple[float, float, float], half: tuple[float, float, float], bevel: float = 0.0,
        rotation: np.ndarray | None = None) -> Field:
    """A box with half-extents ``half``; ``bevel`` > 0 rounds its edges (a bevel of that radius)."""
    c, h = np.asarray(center, np.float64), np.asarray(half, np.float64)
    r = float(min(bevel, h.min()))

    def f(p: np.ndarray) -> np.ndarray:
        q = np.abs(_local(p, c, rotation)) - (h - r)  # [N, 3]
        outside = np.linalg.norm(np.maximum(q, 0.0), axis=1)
        inside = np.minimum(q.max(axis=1), 0.0)
        return outside + inside - r

    return f


def cylinder(center: tuple[float, float, float], radius: float, half_height: float,
             rotation: np.ndarray | None = None, bevel: float = 0.0) -> Field:
    """A capped cylinder along the local Z axis."""
    c = np.asarray(center, np.float64)
    r = float(min(bevel, radius, half_height))

    def f(p: np.ndarray) -> np.ndarray:
        q = _local(p, c, rotation)
        d = np.stack([np.hypot(q[:, 0], q[:, 1]) - (radius - r), np.abs(q[:, 2]) - (half_height - r)], 1)
        return np.linalg.norm(np.maximum(d, 0.0), axis=1) + np.minimum(d.max(axis=1), 0.0) - r

    return f


def capsule(a: tuple[float, float, float], b: tuple[float, float, float], radius: float) -> Field:
    pa, pb = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ab = pb - pa
    denom = float(ab @ ab) or 1.0

    def f(p: np.ndarray) -> np.ndarray:
        t = np.clip((p - pa) @ ab / denom, 0.0, 1.0)  # [N]
        return np.linalg.norm(p - pa - t[:, None] * ab, axis=1) - radius

    return f


def torus(center: tuple[float, float, float], major: float, minor: float,
          rotation: np.ndarray | None = None) -> Field:
    c = np.asarray(center, np.float64)

    def f(p: np.ndarray) -> np.ndarray:
        q = _local(p, c, rotation)
        return np.hypot(np.hypot(q[:, 0], q[:, 1]) - major, q[:, 2]) - minor

    return f


def _local(p: np.ndarray, center: np.ndarray, rotation: np.ndarray | None) -> np.ndarray:
    """World points -> the primitive's frame (``rotation`` is local->world, so world->local is its transpose)."""
    q = p - center
    return q if rotation is None else q @ rotation


def rotation_matrix(axis: str, angle: float) -> np.ndarray:
    """A 3x3 rotation about the world X, Y or Z axis (radians)."""
    c, s = np.cos(angle), np.sin(angle)
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    m = np.eye(3)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


# ----------------------------------------------------------------------------------------------- CSG


def union(*fields: Field) -> Field:
    return lambda p: np.minimum.reduce([f(p) for f in fields])


def intersection(*fields: Field) -> Field:
    return lambda p: np.maximum.reduce([f(p) for f in fields])


def subtract(base: Field, *cutters: Field) -> Field:
    return lambda p: np.maximum.reduce([base(p)] + [-c(p) for c in cutters])


def smooth_union(a: Field, b: Field, k: float) -> Field:
    """Union blended over a width ``k`` (polynomial smooth minimum): organic joints."""

    def f(p: np.ndarray) -> np.ndarray:
        da, db = a(p), b(p)
        h = np.clip(0.5 + 0.5 * (db - da) / k, 0.0, 1.0)
        return db * (1 - h) + da * h - k * h * (1 - h)

    return f


def engrave(base: Field, cutter: Field, depth: float) -> Field:
    """Cut ``cutter`` into ``base`` only within ``depth`` of its surface: panel lines, vents, carvings."""
    shell_cut = intersection(cutter, lambda p: -base(p) - depth)  # the cutter minus the deep interior
    return subtract(base, shell_cut)


def displace(base: Field, offset: Field) -> Field:
    """Move the surface outwards by ``offset(p)`` (keep |offset| small against the feature size)."""
    return lambda p: base(p) - offset(p)


# --------------------------------------------------------------------------------------------- noise


def value_noise(rng: np.random.Generator, frequency: float, octaves: int = 3) -> Field:
    """Fractal value noise in about [-1, 1]: a random lattice per octave, cubic-spline interpolated."""
    from scipy.ndimage import map_coordinates

    lattices = [rng.uniform(-1.0, 1.0, size=(int(frequency * 2**o) + 4,) * 3) for o in range(octaves)]

    def f(p: np.ndarray) -> np.ndarray:
        total = np.zeros(len(p))
        for o, lattice in enumerate(lattices):
            coords = (p.T + 0.5) * frequency * 2**o + 1.5  # [3, N] lattice coordinates, a margin each side
            total += map_coordinates(lattice, coords, order=3, mode="nearest") * 0.5**o
        return total / (2.0 - 0.5 ** (octaves - 1))

    return f


# ------------------------------------------------------------------------------------------- meshing


def mesh_field(field: Field, resolution: int, bound: float = 0.5,
               lipschitz: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes on [-bound, bound]^3 sampled at ``resolution``^3: vertices [V, 3], faces [F, 3].

    The grid border is forced outside, so the surface is always closed; faces are oriented outwards.
    ``lipschitz`` bounds how fast the field changes (1 for an exact distance): the grid is evaluated in
    an octree of blocks, and a block whose centre is farther than that bound allows from the surface
    takes its centre's value, so only a shell around the surface is evaluated point by point.
    """
    from skimage.measure import marching_cubes

    step = 2.0 * bound / (resolution - 1)
    values = sample_grid(field, resolution, bound, lipschitz)  # [R, R, R]
    for dim in range(3):
        for face in (0, -1):
            index: list[Any] = [slice(None)] * 3
            index[dim] = face
            values[tuple(index)] = np.maximum(values[tuple(index)], step)
    # keep every crossing at least 1/1000 of a cell from a grid point, so no triangle is a zero-area sliver
    near = np.abs(values) < 1e-3 * step
    values[near] = np.where(values[near] < 0, -1e-3 * step, 1e-3 * step)
    if values.min() >= 0:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)
    verts, faces, _, _ = marching_cubes(values, 0.0, spacing=(step,) * 3)
    verts = verts - bound
    faces = faces[:, ::-1] if _signed_volume(verts, faces) < 0 else faces
    return verts.astype(np.float32), np.ascontiguousarray(faces, dtype=np.int64)


def sample_grid(field: Field, resolution: int, bound: float = 0.5, lipschitz: float = 1.5) -> np.ndarray:
    """The field on the ``resolution``^3 grid over [-bound, bound]^3, exact within a shell of the surface."""
    step = 2.0 * bound / (resolution - 1)
    size = 1 << max(0, int(np.ceil(np.log2(resolution))) - 2)  # coarsest block side, in grid cells
    values = np.empty((resolution,) * 3, np.float32)
    corners = np.stack(np.meshgrid(*[np.arange(0, resolution, size)] * 3, indexing="ij"), -1).reshape(-1, 3)
    while True:
        if size == 1:
            values[tuple(corners.T)] = field(corners * step - bound)
            return values
        centres = np.minimum(corners + (size - 1) / 2.0, resolution - 1)  # [B, 3] grid coordinates
        d = field(centres * step - bound)  # [B]
        reach = lipschitz * (np.sqrt(3.0) * size / 2.0 + 1.0) * step
        far = np.abs(d) > reach
        for corner, value in zip(corners[far], d[far], strict=True):
            values[corner[0]:corner[0] + size, corner[1]:corner[1] + size, corner[2]:corner[2] + size] = value
        size //= 2
        offsets = np.stack(np.meshgrid(*[[0, size]] * 3, indexing="ij"), -1).reshape(-1, 3)  # [8, 3]
        corners = (corners[~far][:, None, :] + offsets[None]).reshape(-1, 3)
        corners = corners[(corners < resolution).all(axis=1)]


def _signed_volume(verts: np.ndarray, faces: np.ndarray) -> float:
    a, b, c = (verts[faces[:, i]].astype(np.float64) for i in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)
