"""Evaluate a sparse-structure flow as the engine runs it: sample, decode, compare the surface's normals."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from backend.sampling import sample_flow_euler

from .data import AssetFolder
from .normal_loss import angular_error_degrees


@torch.no_grad()
def decoded_normal_error(flow: nn.Module, decoder: nn.Module, data: Path, *, steps: int = 10,
                         cfg_strength: float = 0.0, seed: int = 0, points: int = 2048) -> float:
    """Mean angle (degrees) between the decoded occupancy field's normals and the assets' true normals.

    Each asset's latent is sampled with the engine's Euler sampler from its condition (a fixed noise per asset),
    decoded by ``decoder``, and its field normals are read at (up to ``points``) true surface points.
    """
    assets = AssetFolder(Path(data), need_surface=True)
    errors = []
    for i in range(len(assets)):
        asset = assets[i]
        noise = torch.randn(1, *asset.latent.shape, generator=torch.Generator().manual_seed(seed + i))
        cond = asset.cond[None]
        latent = sample_flow_euler(flow, noise, cond, torch.zeros_like(cond), steps=steps,
                                   cfg_strength=cfg_strength)
        logits = decoder(latent)[:, 0]  # [1, R, R, R]
        pts, nrm = asset.points[:points][None], asset.normals[:points][None]  # type: ignore[index]
        errors.append(angular_error_degrees(logits, pts, nrm).mean())
    return float(torch.stack(errors).mean())
