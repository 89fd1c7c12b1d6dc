"""The normal regulariser of the latent stage: normals of the mesh decoder's SDF at surface points.

The mesh decoder gives, for every occupied cube of the 256^3 grid, the SDF at its 8 corners (channels 0..7,
positive outside). The engine averages each corner over the cubes that share it and runs marching cubes on
that grid (``backend/mesh/marching_cubes.py``). Here the same averaged corner values are interpolated
trilinearly inside the cube that holds a surface point, and the normal is the analytic gradient of that
interpolant, normalised: ``n = grad s / |grad s|`` (outward, as the engine's faces are wound).

Why the SDF and not a rasterizer: the decoded SDF is exactly what the extraction turns into triangles, its
gradient at a point is a fixed linear function of 8 decoder outputs (so the loss is smooth in the latent and
``torch.autograd.gradcheck`` passes in float64), and it needs only gathers and sums, the same code on CPU and
GPU; a plain-torch rasterizer of the extracted mesh would need a differentiable marching cubes first. The
deformation channels (at most half a cube) and the 1/256 sdf bias do not change the normal and are left out.
Points whose cube the decoder did not produce count as missed: they take no loss, and ``coverage`` reports them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from backend.mesh.decoder_layout import CORNERS, grid_keys

MESH_RESOLUTION = 256


def averaged_corners(cubes: torch.Tensor, sdf: torch.Tensor, res: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cubes [M, 3] with per-cube corner sdf [M, 8] -> (corner index [M, 8] into values, values [V]).

    Each grid point's value is the mean over the cubes sharing it (the engine's scatter mean), in sdf's dtype.
    """
    keys = grid_keys(cubes, res)[:, None] + grid_keys(CORNERS.to(cubes.device), res)  # [M, 8]
    unique, inverse = torch.unique(keys.reshape(-1), return_inverse=True)
    ones = torch.ones(inverse.shape, dtype=sdf.dtype, device=sdf.device)
    count = torch.zeros(len(unique), dtype=sdf.dtype, device=sdf.device).index_add_(0, inverse, ones)
    total = torch.zeros(len(unique), dtype=sdf.dtype, device=sdf.device).index_add_(0, inverse, sdf.reshape(-1))
    return inverse.reshape(-1, 8), total / count


def find_cubes(cubes: torch.Tensor, points: torch.Tensor, res: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For points [P, 3] in [-0.5, 0.5]^3: (row of the cube holding each [P], found [P], offset in cube [P, 3])."""
    q = (points.detach() + 0.5) * res
    cell = q.floor().clamp(0, res - 1)
    frac = q - cell  # [P, 3], in [0, 1] inside the grid
    keys = grid_keys(cubes, res)
    order = torch.argsort(keys)
    sorted_keys = keys[order]
    wanted = grid_keys(cell.long(), res)
    pos = torch.searchsorted(sorted_keys, wanted).clamp(max=max(len(keys) - 1, 0))
    found = sorted_keys[pos] == wanted if len(keys) else torch.zeros_like(wanted, dtype=torch.bool)
    return order[pos], found, frac


def sdf_normals(cubes: torch.Tensor, sdf: torch.Tensor, points: torch.Tensor, res: int = MESH_RESOLUTION,
                eps: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit outward normals [P, 3] of the decoded SDF at ``points`` [P, 3], and which points had a cube [P].

    ``cubes`` [M, 3] integer cube positions (0..res-1) and ``sdf`` [M, 8] their corner values (corner order
    of ``decoder_layout.CORNERS``). Differentiable w.r.t. ``sdf``.
    """
    corner_index, values = averaged_corners(cubes, sdf, res)
    rows, found, frac = find_cubes(cubes, points, res)
    corner = values[corner_index[rows]]  # [P, 8]
    frac = frac.to(sdf.dtype)
    offsets = CORNERS.to(points.device)  # [8, 3] in {0, 1}
    weights = torch.where(offsets.bool(), frac[:, None, :], 1.0 - frac[:, None, :])  # [P, 8, 3]
    slopes = torch.where(offsets.bool(), 1.0, -1.0).to(sdf.dtype) * res  # [8, 3] d weight / d position
    grad = []
    for axis in range(3):
        others = [a for a in range(3) if a != axis]
        w = weights[..., others[0]] * weights[..., others[1]] * slopes[:, axis]  # [P, 8]
        grad.append((w * corner).sum(-1))
    g = torch.stack(grad, dim=-1)  # [P, 3]
    return g / torch.sqrt((g * g).sum(-1, keepdim=True) + eps), found


@dataclass
class NormalMatch:
    """Per-point comparison of decoded and true normals for one sample."""

    cos: torch.Tensor  # [P] cosine between decoded and true normals (0 where missed)
    found: torch.Tensor  # [P] bool, the point's cube was decoded

    @property
    def coverage(self) -> float:
        return float(self.found.float().mean())


def match_normals(cubes: torch.Tensor, sdf: torch.Tensor, points: torch.Tensor, normals: torch.Tensor,
                  res: int = MESH_RESOLUTION) -> NormalMatch:
    n, found = sdf_normals(cubes, sdf, points, res)
    cos = (n * normals.to(n.dtype)).sum(-1) * found
    return NormalMatch(cos, found)


def decoded_normal_loss(cubes: list[torch.Tensor], sdf: list[torch.Tensor], points: torch.Tensor,
                        normals: torch.Tensor, weights: torch.Tensor, res: int = MESH_RESOLUTION) -> torch.Tensor:
    """Sum over samples of ``weight * mean(1 - cos)`` over found points, divided by the sample count.

    ``cubes[b]`` [M_b, 3] / ``sdf[b]`` [M_b, 8] per sample, ``points`` / ``normals`` [B, P, 3], ``weights`` [B].
    Dividing by B (not by the weight sum) keeps a split batch's average equal to the whole batch's.
    """
    terms = []
    for b in range(len(cubes)):
        m = match_normals(cubes[b], sdf[b], points[b], normals[b], res)
        hits = m.found.to(sdf[b].dtype)
        per = ((1.0 - m.cos) * hits).sum() / hits.sum().clamp(min=1.0)
        terms.append(per * weights[b].to(per.dtype))
    return torch.stack(terms).sum() / len(cubes)


def angular_errors_degrees(cubes: torch.Tensor, sdf: torch.Tensor, points: torch.Tensor, normals: torch.Tensor,
                           res: int = MESH_RESOLUTION) -> tuple[torch.Tensor, float]:
    """(angles in degrees [F] at the F found points, coverage in [0, 1]) for evaluation."""
    m = match_normals(cubes, sdf, points, normals, res)
    angles = torch.rad2deg(torch.arccos(m.cos[m.found].clamp(-1.0, 1.0)))
    return angles, m.coverage
