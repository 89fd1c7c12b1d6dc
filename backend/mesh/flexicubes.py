"""FlexiCubes surface extraction (TRELLIS mode) on the sparse set of occupied cubes, in plain torch.

FlexiCubes: T. Shen et al., "Flexible Isosurface Extraction for Gradient-Based Mesh Optimization",
SIGGRAPH 2023 (ACM TOG 42(4)). It is Dual Marching Cubes with learned weights: each surface cube emits one
dual vertex per surface patch of its sign configuration (the DMC table), placed at the beta-weighted mean of
the patch's edge crossings, each crossing found on the alpha-weighted sdf; every grid edge with a sign change
gives a quad joining the dual vertices of its four cubes, split into two triangles along the diagonal whose
gamma product is larger. What is implemented (inference only, ``training=False`` in TRELLIS):

- TRELLIS' ``SparseFeatures2Mesh``: sdf + (-1/res) bias and deformation averaged per grid point over the
  cubes that share it; beta = weights[:, :12], alpha = weights[:, 12:20], gamma = weights[:, 20];
  normalised as beta, alpha = 1 + 0.99 tanh(.), gamma = 0.005 + 0.99 sigmoid(.).
- TRELLIS runs FlexiCubes on the dense 256^3 grid (sdf +1, weights 0 where no cube is occupied). Only cubes
  with a corner inside (sdf < 0) can be surface cubes, and every such corner belongs to an occupied cube, so
  here the candidates are the cubes touching an inside grid point, with the same +1 / 0 defaults: the same
  surface, with memory bounded by the occupied region. Unoccupied cubes at the border are included, so
  surfaces close exactly where the dense run closes them (it stays open at the grid's own sides).
- The C16/C19 ambiguity resolution (paper's supplement, section 1.3): an ambiguous cube whose neighbour across
  the ambiguous face is ambiguous too switches both to their inverted case.
- Quads only for edges shared by four surface cubes (as the reference); winding faces positive sdf
  (outward). One difference: the reference orients by ``sdf > 0`` at one end of the edge, this code by
  ``sdf < 0`` (inside) at the other, which only differs when an sdf is exactly 0.

Not implemented: the training-time pieces (four-triangle quad split, L_dev regulariser, tetrahedral output,
the QEF placement with a gradient function) and vertex colours. Tables are in ``flexicubes_tables``.

Output frame: as ``marching_cubes`` (the decoder's [-0.5, 0.5]^3 frame = Blender's, +Z up).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import EmptyResult
from .decoder_layout import (
    CORNERS,
    GridVertices,
    deformed_positions,
    grid_keys,
    grid_vertices,
    in_grid,
    keys_to_coords,
    lookup,
    sdf_bias,
    split_features,
)
from .flexicubes_tables import AMBIGUOUS, CUBE_EDGES, DMC_GROUPS
from .marching_cubes import EMPTY_HINT

WEIGHT_SCALE = 0.99


@dataclass
class SurfaceCubes:
    """Cubes with a sign change among their corners, sorted by key."""

    coords: torch.Tensor  # [S, 3] int64
    keys: torch.Tensor  # [S] int64, sorted
    sdf: torch.Tensor  # [S, 8] corner sdf
    pos: torch.Tensor  # [S, 8, 3] deformed corner positions


def extract_flexicubes(cubes: torch.Tensor, feats: torch.Tensor, res: int,
                       weight_scale: float = WEIGHT_SCALE) -> tuple[np.ndarray, np.ndarray]:
    """Occupied cubes [M, 3] (0..res-1) and decoder features [M, 101] -> (vertices [V, 3] f32, faces [F, 3] i32).

    Runs on the device of ``feats``; raises ``EmptyResult`` when there is no surface.
    """
    cubes = cubes.to(feats.device).long()
    parts = split_features(feats)
    grid = grid_vertices(cubes, parts.sdf + sdf_bias(res), parts.deform, res)
    surf = surface_cubes(grid, res)
    if len(surf.keys) == 0:
        raise EmptyResult("The decoded shape has no surface.", hint=EMPTY_HINT)
    beta, alpha, gamma = normalize_weights(cube_weights(cubes, parts.weights, surf.keys, res), weight_scale)
    case = case_ids(surf, res)
    vertices, vertex_cube, edge_vertex = dual_vertices(surf, case, beta, alpha)
    quads = surface_quads(surf, edge_vertex)
    if len(quads) == 0:
        raise EmptyResult("The decoded shape has no closed surface.", hint=EMPTY_HINT)
    faces = split_quads(quads, gamma[vertex_cube])
    vertices, faces = _drop_unused(vertices, faces)
    return vertices.cpu().numpy().astype(np.float32), faces.cpu().numpy().astype(np.int32)


def surface_cubes(grid: GridVertices, res: int) -> SurfaceCubes:
    """The cubes of the dense grid with a sign change, found from the inside grid points only."""
    corners = CORNERS.to(grid.coords.device)
    inside = grid.coords[grid.sdf < 0]  # [I, 3]
    candidates = (inside[:, None, :] - corners).reshape(-1, 3)  # cubes touching an inside point
    candidates = candidates[in_grid(candidates, res - 1)]
    keys = torch.unique(grid_keys(candidates, res))  # [C] sorted
    coords = keys_to_coords(keys, res)  # [C, 3]
    idx, found = lookup(grid.keys, grid_keys(coords[:, None, :] + corners, res))  # [C, 8]
    sdf = torch.where(found, grid.sdf[idx], torch.ones_like(grid.sdf[idx]))  # +1 where no cube reaches
    n_inside = (sdf < 0).sum(dim=1)
    keep = (n_inside > 0) & (n_inside < 8)
    deform = torch.where(found[keep, :, None], grid.deform[idx[keep]], 0.0)  # [S, 8, 3]
    pos = deformed_positions(coords[keep, None, :] + corners, deform, res)  # [S, 8, 3]
    return SurfaceCubes(coords[keep], keys[keep], sdf[keep], pos)


def cube_weights(cubes: torch.Tensor, weights: torch.Tensor, keys: torch.Tensor, res: int) -> torch.Tensor:
    """Raw weights [S, 21] of the cubes with ``keys``: the decoder's for occupied cubes, 0 elsewhere."""
    cube_keys = grid_keys(cubes, res)
    order = torch.argsort(cube_keys)
    idx, found = lookup(cube_keys[order], keys)
    picked = weights[order[idx]]  # [S, 21]
    return torch.where(found[:, None], picked, torch.zeros_like(picked))


def normalize_weights(weights: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Raw [S, 21] -> beta [S, 12] and alpha [S, 8] in (1 - scale, 1 + scale), gamma [S] in (0, 1)."""
    beta = 1.0 + scale * torch.tanh(weights[:, :12])
    alpha = 1.0 + scale * torch.tanh(weights[:, 12:20])
    gamma = (1.0 - scale) / 2.0 + scale * torch.sigmoid(weights[:, 20])
    return beta, alpha, gamma


def case_ids(surf: SurfaceCubes, res: int) -> torch.Tensor:
    """Sign configuration [S] (bit i set when corner i is inside), with the C16/C19 ambiguity resolved."""
    dev = surf.sdf.device
    bits = 2 ** torch.arange(8, device=dev)
    case = ((surf.sdf < 0).long() * bits).sum(dim=1)  # [S]
    check = _ambiguity_table(dev)[case]  # [S, 5]: flag, dx, dy, dz, inverted case
    problem = torch.nonzero(check[:, 0] == 1)[:, 0]  # sorted, so their keys stay sorted
    neighbour = surf.coords[problem] + check[problem, 1:4]  # [P, 3]
    _, found = lookup(surf.keys[problem], grid_keys(neighbour, res))
    found &= in_grid(neighbour, res - 1)
    case[problem[found]] = check[problem[found], 4]  # both sides of a shared ambiguous face invert
    return case


def dual_vertices(surf: SurfaceCubes, case: torch.Tensor, beta: torch.Tensor,
                  alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Place the dual vertices (paper section 4.2).

    Returns positions [K, 3], the surface cube of each [K], and per cube edge the dual vertex that owns the
    edge's crossing [S, 12] (-1 where the edge has no crossing).
    """
    dev = surf.sdf.device
    groups, counts = _dmc_tables(dev)
    table = groups[case]  # [S, 4, 7] local edges per patch, -1 padded
    owned = torch.arange(4, device=dev) < counts[case][:, None]  # [S, 4]
    vertex_index = torch.cumsum(owned.reshape(-1).long(), 0).reshape(-1, 4) - 1  # [S, 4]
    vertex_cube = torch.nonzero(owned)[:, 0]  # [K], row-major, so in vertex_index order
    cube, slot, k = torch.nonzero(table >= 0, as_tuple=True)  # one entry per (patch, edge)
    edge = table[cube, slot, k]  # [E]
    vertex = vertex_index[cube, slot]  # [E]
    ends = torch.tensor(CUBE_EDGES, device=dev)[edge]  # [E, 2] corner pairs
    crossing = _crossing(surf, alpha, cube, ends)  # [E, 3]
    w = beta[cube, edge]  # [E]
    n = len(vertex_cube)
    total = torch.zeros(n, 3, device=dev, dtype=crossing.dtype).index_add_(0, vertex, w[:, None] * crossing)
    norm = torch.zeros(n, device=dev, dtype=w.dtype).index_add_(0, vertex, w)  # [K]
    edge_vertex = torch.full((len(case), 12), -1, dtype=torch.long, device=dev)
    edge_vertex[cube, edge] = vertex
    return total / norm[:, None], vertex_cube, edge_vertex


def _crossing(surf: SurfaceCubes, alpha: torch.Tensor, cube: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """Zero crossing of the alpha-weighted sdf along each listed cube edge: [E, 3]."""
    a, b = ends[:, 0], ends[:, 1]
    sa = surf.sdf[cube, a] * alpha[cube, a]  # [E]
    sb = surf.sdf[cube, b] * alpha[cube, b]  # [E], opposite sign to sa, so sb - sa != 0
    xa, xb = surf.pos[cube, a], surf.pos[cube, b]  # [E, 3]
    return (sb[:, None] * xa - sa[:, None] * xb) / (sb - sa)[:, None]


def surface_quads(surf: SurfaceCubes, edge_vertex: torch.Tensor) -> torch.Tensor:
    """One quad [Q, 4] of dual vertices per crossing grid edge shared by four surface cubes, facing outward.

    A grid edge along axis d starting at grid point p is shared by the cubes p - (i e_u + j e_v), with u < v
    the other two axes and (i, j) in s0 = (1, 1), s1 = (1, 0), s2 = (0, 1), s3 = (0, 0). The loop
    (s0, s1, s3, s2) winds with its normal along -x, +y, -z for d = x, y, z; it is reversed when the outward
    side (toward positive sdf) is the other one.
    """
    dev = edge_vertex.device
    low, axis, position, low_corner = (t.to(dev) for t in _edge_geometry())
    cube, edge = torch.nonzero(edge_vertex >= 0, as_tuple=True)  # crossing cube edges [E]
    start = surf.coords[cube] + low[edge]  # [E, 3] the edge's lower grid point
    key = (_point_keys(start) * 3 + axis[edge]) * 4 + position[edge]
    key, order = torch.sort(key)
    cube, edge = cube[order], edge[order]
    _, inverse, counts = torch.unique_consecutive(key // 4, return_inverse=True, return_counts=True)
    full = counts[inverse] == 4  # edges at the grid's side have fewer cubes: no quad (as the reference)
    cube, edge = cube[full].reshape(-1, 4), edge[full].reshape(-1, 4)  # [Q, 4] in s0..s3 order
    loop = edge_vertex[cube, edge][:, [0, 1, 3, 2]]  # [Q, 4]
    low_inside = surf.sdf[cube[:, 0], low_corner[edge[:, 0]]] < 0  # outward is +d
    normal_sign = torch.tensor([-1, 1, -1], device=dev)[axis[edge[:, 0]]]  # of the (s0, s1, s3, s2) loop
    flip = low_inside != (normal_sign > 0)
    loop[flip] = loop[flip].flip(1)
    return loop


def split_quads(quads: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Quads [Q, 4] -> triangles [2Q, 3], cut along the diagonal with the larger gamma product (section 4.3)."""
    g = gamma[quads]  # [Q, 4]
    along_02 = g[:, 0] * g[:, 2] > g[:, 1] * g[:, 3]
    split_02 = quads[:, [0, 1, 2, 0, 2, 3]]
    split_13 = quads[:, [0, 1, 3, 3, 1, 2]]
    return torch.where(along_02[:, None], split_02, split_13).reshape(-1, 3)


def _drop_unused(vertices: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Remove dual vertices no face uses (patches whose edges lie on the grid's side)."""
    used, faces = torch.unique(faces, return_inverse=True)
    return vertices[used], faces


def _point_keys(points: torch.Tensor) -> torch.Tensor:
    """Keys for grid points in 0..(2^20 - 1)^3 (enough for any grid here)."""
    return (points[:, 0] << 40) | (points[:, 1] << 20) | points[:, 2]


def _edge_geometry() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per local edge: lower corner offset [12, 3], axis [12], position s0..s3 around the edge [12],
    and the index of its lower corner [12]."""
    ends = torch.tensor(CUBE_EDGES)  # [12, 2]
    a, b = CORNERS[ends[:, 0]], CORNERS[ends[:, 1]]  # [12, 3]
    low = torch.minimum(a, b)
    axis = (a - b).abs().argmax(dim=1)
    other = torch.tensor([[1, 2], [0, 2], [0, 1]])[axis]  # [12, 2] the perpendicular axes, ascending
    o_u, o_v = low.gather(1, other[:, :1])[:, 0], low.gather(1, other[:, 1:])[:, 0]
    position = 2 * (1 - o_u) + (1 - o_v)
    low_corner = torch.where((a == low).all(dim=1), ends[:, 0], ends[:, 1])
    return low, axis, position, low_corner


def _dmc_tables(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """DMC table padded to [256, 4, 7] (-1 = none) and the number of dual vertices per case [256]."""
    table = torch.full((256, 4, 7), -1, dtype=torch.long)
    for case, patches in enumerate(DMC_GROUPS):
        for slot, edges in enumerate(patches):
            table[case, slot, :len(edges)] = torch.tensor(edges)
    counts = torch.tensor([len(p) for p in DMC_GROUPS])
    return table.to(device), counts.to(device)


def _ambiguity_table(device: torch.device) -> torch.Tensor:
    """[256, 5]: 1 for an ambiguous case, the neighbour's offset, the inverted case."""
    table = torch.zeros(256, 5, dtype=torch.long)
    for case, (dx, dy, dz, inverted) in AMBIGUOUS.items():
        table[case] = torch.tensor([1, dx, dy, dz, inverted])
    return table.to(device)
