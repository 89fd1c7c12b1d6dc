"""Evaluate a sparse-structure flow as the engine runs it: sample, decode, compare with the true surface.

- ``decoded_normal_error``: the decoded occupancy field's normals at the true surface points (degrees);
- ``surface_crossings``: a point sample of a decoded logit field's surface (where the trilinear field crosses 0
  along grid edges, i.e. marching cubes' vertices) with the field's outward normals there;
- ``geometry_scores``: those surface points against the assets' exact surface samples with
  ``metrics.geometry_metrics`` (Chamfer distance, F-score at one decoder cell, normal consistency), per asset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from backend.sampling import sample_flow_euler

from .data import AssetFolder
from .metrics import geometry_metrics
from .normal_loss import angular_error_degrees, field_normals


@torch.no_grad()
def sample_structure_logits(flow: nn.Module, decoder: nn.Module, data: Path, *, steps: int = 10,
                            cfg_strength: float = 0.0, seed: int = 0) -> list[torch.Tensor]:
    """Per asset: a latent sampled from its condition (a fixed noise per asset), decoded: logits [R, R, R]."""
    assets = AssetFolder(Path(data), need_surface=False)
    out = []
    for i in range(len(assets)):
        asset = assets[i]
        noise = torch.randn(1, *asset.latent.shape, generator=torch.Generator().manual_seed(seed + i))
        cond = asset.cond[None]
        latent = sample_flow_euler(flow, noise, cond, torch.zeros_like(cond), steps=steps,
                                   cfg_strength=cfg_strength)
        out.append(decoder(latent)[0, 0])
    return out


@torch.no_grad()
def decoded_normal_error(flow: nn.Module, decoder: nn.Module, data: Path, *, steps: int = 10,
                         cfg_strength: float = 0.0, seed: int = 0, points: int = 2048) -> float:
    """Mean angle (degrees) between the decoded occupancy field's normals and the assets' true normals.

    Each asset's latent is sampled with the engine's Euler sampler from its condition (a fixed noise per asset),
    decoded by ``decoder``, and its field normals are read at (up to ``points``) true surface points.
    """
    assets = AssetFolder(Path(data), need_surface=True)
    logits = sample_structure_logits(flow, decoder, data, steps=steps, cfg_strength=cfg_strength, seed=seed)
    errors = []
    for i, field in enumerate(logits):
        asset = assets[i]
        pts, nrm = asset.points[:points][None], asset.normals[:points][None]  # type: ignore[index]
        errors.append(angular_error_degrees(field[None], pts, nrm).mean())
    return float(torch.stack(errors).mean())


def surface_crossings(field: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(points [K, 3] in [-0.5, 0.5]^3, outward unit normals [K, 3]) where ``field`` [R, R, R] changes sign.

    One point per grid edge (between neighbouring cell centres) whose ends differ in sign, placed where the
    linear interpolant is 0: marching cubes' vertex set. Normals are the logit field's (``field_normals``).
    """
    r = field.shape[-1]
    points = []
    for axis in range(3):
        a, b = field.narrow(axis, 0, r - 1), field.narrow(axis, 1, r - 1)
        cross = (a > 0) != (b > 0)  # [.., R - 1 on axis, ..]
        index = cross.nonzero().to(field.dtype)  # [K, 3] cell index of the edge's first end
        fa, fb = a[cross], b[cross]
        index[:, axis] += fa / (fa - fb)
        points.append((index + 0.5) / r - 0.5)
    p = torch.cat(points)
    if not len(p):
        return p, p
    return p, field_normals(field[None], p[None])[0]


def geometry_scores(logits: list[torch.Tensor], data: Path, points: int = 2048) -> list[dict[str, float]]:
    """``geometry_metrics`` of each decoded field's surface against its asset's true surface samples.

    The F-score threshold is one decoder cell (1 / R). A field with no surface (all inside or all outside)
    scores F = 0 and its Chamfer distance is that of a single point at the grid's centre.
    """
    assets = AssetFolder(Path(data), need_surface=True)
    out = []
    for i, field in enumerate(logits):
        asset = assets[i]
        gt_p = asset.points[:points].double().numpy()  # type: ignore[index]
        gt_n = asset.normals[:points].double().numpy()  # type: ignore[index]
        p, n = surface_crossings(field.double())
        empty = not len(p)
        if empty:
            p, n = torch.zeros(1, 3, dtype=torch.float64), torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
        scores = geometry_metrics(p.numpy(), gt_p, 1.0 / field.shape[-1], n.numpy(), gt_n)
        out.append({**scores, "f_score": 0.0} if empty else scores)
    return out


def mean_scores(scores: list[dict[str, float]]) -> dict[str, float]:
    """Per-key mean over assets."""
    return {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}
