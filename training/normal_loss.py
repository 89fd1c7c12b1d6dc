"""The normal regulariser: normals of a decoded occupancy field at surface points, against true normals.

The structure decoder turns a latent into occupancy logits on a dense R^3 grid (positive inside). Its surface
normal at a point ``p`` is ``-grad f(p) / |grad f(p)|`` where ``f`` is the trilinear interpolant of the logits.

Why the analytic gradient of the trilinear interpolant, and not autograd of the field w.r.t. position:
- the normal loss must be differentiated w.r.t. the decoder's *input*, so a position-autograd normal would
  need ``create_graph=True`` through ``grid_sample``, whose backward is not itself differentiable in torch;
- the derivative of a trilinear interpolant is exact and cheap: along x it is the bilinear (y, z) blend of the
  cell's four x-differences, i.e. a central finite difference of the grid that is *linear in the grid values*,
  so its gradient is one more gather and the same code runs on CPU and GPU, in any float dtype
  (``torch.autograd.gradcheck`` passes in float64, ``tests/training/test_normal_loss.py``).
The field is piecewise trilinear, so the normal jumps across cell faces; on the 64^3 grid a cell is 1/64 of
the object, fine enough for the structure stage whose output is exactly that grid.
"""

from __future__ import annotations

import torch


def to_grid_index(points: torch.Tensor, resolution: int) -> torch.Tensor:
    """Positions in [-0.5, 0.5]^3 -> continuous cell indices (cell i is centred at (i + 0.5) / R - 0.5)."""
    return (points + 0.5) * resolution - 0.5


def field_and_gradient(field: torch.Tensor, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Trilinear value and position gradient of ``field`` [B, R, R, R] at ``points`` [B, P, 3].

    Returns (values [B, P], gradient [B, P, 3] per unit of position). Points outside the grid's cell centres
    are clamped to the border cells. Differentiable w.r.t. ``field`` (not ``points``).
    """
    b, r = field.shape[0], field.shape[-1]
    u = to_grid_index(points.detach(), r).clamp(0, r - 1)  # [B, P, 3]
    base = u.floor().clamp(max=r - 2)
    frac = (u - base).to(field.dtype)  # [B, P, 3] in [0, 1]
    i = base.long()
    flat = field.reshape(b, r**3)
    corners = {}
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                index = ((i[..., 0] + dx) * r + (i[..., 1] + dy)) * r + (i[..., 2] + dz)  # [B, P]
                corners[dx, dy, dz] = flat.gather(1, index)  # [B, P]
    w = [(1.0 - frac[..., k], frac[..., k]) for k in range(3)]  # interpolation weights per axis
    dw = (-float(r), float(r))  # d weight / d position (d index / d position = R)
    value = sum(w[0][a] * w[1][c] * w[2][e] * v for (a, c, e), v in corners.items())
    gx = sum(dw[a] * w[1][c] * w[2][e] * v for (a, c, e), v in corners.items())
    gy = sum(w[0][a] * dw[c] * w[2][e] * v for (a, c, e), v in corners.items())
    gz = sum(w[0][a] * w[1][c] * dw[e] * v for (a, c, e), v in corners.items())
    return value, torch.stack([gx, gy, gz], dim=-1)  # [B, P], [B, P, 3]


def field_normals(field: torch.Tensor, points: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Outward unit normals [B, P, 3] of the logit field (positive inside) at ``points``."""
    _, grad = field_and_gradient(field, points)
    return -grad / torch.sqrt((grad * grad).sum(-1, keepdim=True) + eps * eps)


def normal_loss(field: torch.Tensor, points: torch.Tensor, normals: torch.Tensor,
                weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean ``1 - cos`` between the field's normals and ``normals`` [B, P, 3], per sample weighted.

    ``weights`` [B] (default ones) scales each sample's mean; the result is divided by B (not by the weight
    sum), so a weight of 0 just drops a sample and batches split across processes average the same way.
    """
    cos = (field_normals(field, points) * normals.to(field.dtype)).sum(-1)  # [B, P]
    per_sample = (1.0 - cos).mean(dim=1)  # [B]
    if weights is not None:
        per_sample = per_sample * weights.to(per_sample.dtype)
    return per_sample.sum() / field.shape[0]


def angular_error_degrees(field: torch.Tensor, points: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
    """Per-point angle [B, P] in degrees between the field's normals and ``normals`` (for evaluation)."""
    cos = (field_normals(field, points) * normals.to(field.dtype)).sum(-1).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.arccos(cos))
