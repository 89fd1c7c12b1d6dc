"""Surface extraction as the Hi3DGen release does it: marching cubes on the averaged corner SDF.

The release (``cube2mesh.py``): per-corner sdf (plus a bias of -1/res) and deformation are averaged over the
cubes sharing a corner; grid points that are no occupied cube's corner count as outside (sdf +1, no
deformation); scikit-image marching cubes (Lewiner, level 0, ``gradient_direction='ascent'``) runs on the
dense (res+1)^3 grid; each vertex is placed by trilinear interpolation of the deformed grid over the cube
that holds it (most vertices lie on a cube edge, where this is linear along the edge, but Lewiner adds
vertices inside a cube for some ambiguous sign patterns); the face winding is then flipped, which makes it
outward (normals toward positive sdf; checked by the tests). The 21 FlexiCubes weight channels are ignored.

Memory: instead of the release's dense 257^3 x 10 attributes (plus 1.5 GB of index grids), the dense sdf
grid spans only the occupied region's bounding box plus one grid point of outside border, clipped to the
grid (so a surface that reaches the grid's side stays open there, as in the release). The output equals the
full-grid run (``full_grid=True``, kept as the reference) up to float rounding.

Output frame: the decoder's object frame in [-0.5, 0.5]^3. The release exports it to glTF through
(x, y, z) -> (x, z, -y), i.e. it treats this frame as +Z up; it is Blender's frame (+Z up), where the object
stands upright and faces -Y (assuming the release's GLB shows it facing +Z, glTF's front).
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import EmptyResult
from .decoder_layout import (
    CORNERS,
    GridVertices,
    deform_scale,
    grid_keys,
    grid_vertices,
    lookup,
    sdf_bias,
    split_features,
)

EMPTY_HINT = "Try another seed or check the object's mask."


def extract_marching_cubes(cubes: torch.Tensor, feats: torch.Tensor, res: int,
                           full_grid: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Occupied cubes [M, 3] (0..res-1) and decoder features [M, 101] -> (vertices [V, 3] f32, faces [F, 3] i32).

    Raises ``EmptyResult`` when the sdf has no zero crossing. ``full_grid`` runs on the whole (res+1)^3 grid
    as the release does (a reference for tests; it needs about 70 MB per 257^3 grid instead of the bbox).
    """
    from skimage.measure import marching_cubes

    if len(cubes) == 0:
        raise EmptyResult("The decoder produced no occupied cubes.", hint=EMPTY_HINT)
    parts = split_features(feats)
    grid = grid_vertices(cubes, parts.sdf + sdf_bias(res), parts.deform, res)
    lo, dense = _dense_sdf(grid, res, full_grid)
    if dense.min() >= 0.0 or dense.max() <= 0.0:  # skimage would raise ValueError
        raise EmptyResult("The decoded shape has no surface.", hint=EMPTY_HINT)
    verts, faces, _, _ = marching_cubes(dense, level=0.0, gradient_direction="ascent")
    if len(faces) == 0:
        raise EmptyResult("The decoded shape has no surface.", hint=EMPTY_HINT)
    positions = _place(torch.from_numpy(np.ascontiguousarray(verts)), grid, lo, dense.shape, res)
    faces = np.ascontiguousarray(faces[:, ::-1])  # the release flips the winding, which makes it outward
    return positions.numpy().astype(np.float32), faces.astype(np.int32)


def _dense_sdf(grid: GridVertices, res: int, full_grid: bool) -> tuple[torch.Tensor, np.ndarray]:
    """The sdf on a dense box of grid points (+1 where no cube reaches) and the box's lowest corner."""
    coords = grid.coords.cpu()
    if full_grid:
        lo, hi = torch.zeros(3, dtype=torch.int64), torch.full((3,), res, dtype=torch.int64)
    else:  # one point of outside border, clipped to the grid
        lo = (coords.min(0).values - 1).clamp(min=0)
        hi = (coords.max(0).values + 1).clamp(max=res)
    dense = np.ones((hi - lo + 1).tolist(), np.float32)  # [X, Y, Z], +1 = outside
    local = (coords - lo).numpy()
    dense[local[:, 0], local[:, 1], local[:, 2]] = grid.sdf.cpu().numpy()
    return lo, dense


def _place(verts: torch.Tensor, grid: GridVertices, lo: torch.Tensor, box: tuple[int, ...],
           res: int) -> torch.Tensor:
    """Marching-cubes vertices (box index space) -> trilinear interpolation of the deformed grid over their cubes.

    A vertex's cube is the floor of its coordinates, clamped so that the cube's +1 corner stays in the box
    (a vertex with an integer coordinate on the box's upper side then sits at the cube's fraction 1), as the
    release's clamped corner lookup does. Undeformed grid positions are linear, so their interpolation is the
    vertex itself; only the deformation is gathered from the 8 corners (zero at points no cube touches).
    """
    verts = verts.double()  # [V, 3]
    upper = torch.tensor(box, dtype=torch.int64) - 2  # the last cube's lower corner per axis
    base = torch.minimum(torch.floor(verts).long().clamp(min=0), upper)  # [V, 3]
    frac = (verts - base).clamp(0.0, 1.0)  # [V, 3] position inside the cube
    weights = torch.where(CORNERS.bool(), frac[:, None, :], 1.0 - frac[:, None, :]).prod(dim=2)  # [V, 8]
    vertex, corner = torch.nonzero(weights, as_tuple=True)  # [P]: about 2 per vertex (most lie on an edge)
    keys = grid_keys(base + lo, res)[vertex] + grid_keys(CORNERS, res)[corner]  # [P]; keys are linear
    idx, found = lookup(grid.keys.cpu(), keys)
    shift = torch.tanh(grid.deform.cpu()[idx]).double() * (weights[vertex, corner] * found)[:, None]  # [P, 3]
    moved = torch.zeros(len(verts), 3, dtype=torch.float64).index_add_(0, vertex, shift)  # [V, 3]
    positions = (base + frac + lo) / res - 0.5 + deform_scale(res) * moved  # [V, 3]
    return positions.float()
