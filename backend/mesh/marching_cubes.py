"""Surface extraction as the Hi3DGen release does it: marching cubes on the averaged corner SDF.

Per-corner SDF (plus the release's bias of -1/res) and deformation are averaged over the cubes sharing a
corner; corners of no occupied cube count as outside (+1); marching cubes (scikit-image, Lewiner) finds the
0 level; each vertex is placed on the deformed grid by interpolating along its edge. Unlike the release,
the dense grid spans only the occupied region's bounding box (plus a one-voxel border), not 257^3.

Output frame: the decoder's, which is Blender's (+Z up; the release rotates it to glTF's +Y up on export).
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import EmptyResult
from .decoder_layout import deformed_positions, grid_keys, grid_vertices, split_features


def extract_marching_cubes(cubes: torch.Tensor, feats: torch.Tensor, res: int) -> tuple[np.ndarray, np.ndarray]:
    """Occupied cubes [M, 3] (0..res-1) and decoder features [M, 101] -> (vertices [V, 3] f32, faces [F, 3] i32)."""
    from skimage.measure import marching_cubes

    parts = split_features(feats)
    grid = grid_vertices(cubes, parts.sdf + (-1.0 / res), parts.deform, res)
    lo = grid.coords.min(0).values - 1  # one outside voxel of border so the surface closes
    shape = (grid.coords.max(0).values - lo + 2).tolist()
    dense = np.ones(shape, np.float32)  # [X, Y, Z] +1 = outside
    local = (grid.coords - lo).cpu().numpy()
    dense[local[:, 0], local[:, 1], local[:, 2]] = grid.sdf.cpu().numpy()
    if dense.min() >= 0.0 or dense.max() <= 0.0:
        raise EmptyResult("The decoded shape has no surface.", hint="Try another seed or check the object's mask.")
    verts, faces, _, _ = marching_cubes(dense, level=0.0, gradient_direction="ascent")
    positions = _place(torch.from_numpy(np.ascontiguousarray(verts)).to(cubes.device), grid, lo, res)
    faces = np.ascontiguousarray(faces[:, ::-1])  # the release flips the winding to face outward
    return positions.cpu().numpy().astype(np.float32), faces.astype(np.int32)


def _place(verts: torch.Tensor, grid, lo: torch.Tensor, res: int) -> torch.Tensor:  # noqa: ANN001
    """Marching-cubes vertices (grid index space, on grid edges) -> positions on the deformed grid."""
    base = torch.floor(verts).long()  # [V, 3]
    frac = verts - base  # exactly one axis is fractional per vertex
    axis = frac.argmax(dim=1)
    t = frac.gather(1, axis[:, None])[:, 0].float()  # [V]
    step = torch.nn.functional.one_hot(axis, 3)
    a = _deformed(base + lo, grid, res)
    b = _deformed(base + step + lo, grid, res)
    return a + (b - a) * t[:, None]


def _deformed(coords: torch.Tensor, grid, res: int) -> torch.Tensor:  # noqa: ANN001
    """Deformed positions of grid points; points that are no occupied cube's corner are not deformed."""
    keys = grid_keys(coords, res)
    table = grid_keys(grid.coords, res)  # sorted, as torch.unique returns
    idx = torch.searchsorted(table, keys).clamp(max=len(table) - 1)
    inside = ((coords >= 0) & (coords <= res)).all(dim=1)  # border points outside the grid have no key
    found = (table[idx] == keys) & inside
    deform = torch.where(found[:, None], grid.deform[idx], torch.zeros_like(grid.deform[idx]))
    return deformed_positions(coords, deform, res)
