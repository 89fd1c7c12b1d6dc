"""Evaluate a structured-latent flow on a data set: held-out loss, sampled latents, decoded normals.

- ``validation_loss``: the flow-matching loss at fixed draws (seeded per asset and draw, no dropout), the
  number a trained model should lower on assets it never saw;
- ``sample_latents``: the engine's Euler sampler (``backend.sampling``, via the engine's sparse adapter) from a
  fixed noise per asset, on the asset's voxels;
- ``sampled_latent_error``: mean squared distance of those samples to the assets' latents;
- ``decoded_normal_error``: the samples, de-normalised and decoded by the mesh decoder, compared with the true
  normals at the surface points (mean angle in degrees over the points whose cube was decoded, and coverage).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from backend.nn.sparse_tensor import SparseTensor
from backend.pipelines.hi3dgen import SparseFlow
from backend.sampling import sample_flow_euler

from .config import TrainSection
from .data import sample_seed
from .slat_data import SLatAssetFolder
from .slat_normals import angular_errors_degrees
from .slat_trainer import Normalisation, make_slat_batch, slat_batch_loss


@torch.no_grad()
def validation_loss(flow: nn.Module, data: Path, *, draws: int = 8, seed: int = 12345,
                    train: TrainSection | None = None) -> float:
    """Mean flow-matching MSE over the assets of ``data`` and ``draws`` fixed (noise, t) draws each."""
    train = dataclasses.replace(train or TrainSection(), p_uncond=0.0, normal_weight=0.0)
    assets = SLatAssetFolder(Path(data), need_surface=False)
    total, count = 0.0, 0
    for i in range(len(assets)):
        asset = assets[i]
        for d in range(draws):
            batch = make_slat_batch([asset], [sample_seed(seed, i, d)], train, torch.device("cpu"))
            loss, _ = slat_batch_loss(flow, None, None, batch, train, autocast=False)
            total, count = total + float(loss), count + 1
    return total / count


@torch.no_grad()
def sample_latents(flow: nn.Module, data: Path, *, steps: int = 10, cfg_strength: float = 0.0,
                   seed: int = 0) -> list[torch.Tensor]:
    """One sampled latent [N_i, 8] (normalised) per asset, from a fixed noise per asset."""
    assets = SLatAssetFolder(Path(data), need_surface=False)
    out = []
    for i in range(len(assets)):
        asset = assets[i]
        coords = torch.cat([torch.zeros(len(asset.coords), 1, dtype=torch.int32), asset.coords], 1)
        noise = torch.randn(len(coords), 8, generator=torch.Generator().manual_seed(seed + i))
        cond = asset.cond[None]
        out.append(sample_flow_euler(SparseFlow(flow, coords), noise, cond, torch.zeros_like(cond), steps=steps,
                                     cfg_strength=cfg_strength, batch_cfg=False))
    return out


def sampled_latent_error(flow: nn.Module, data: Path, *, steps: int = 10, seed: int = 0) -> float:
    """Mean squared distance between sampled and true latents, over assets (each asset's mean)."""
    assets = SLatAssetFolder(Path(data), need_surface=False)
    samples = sample_latents(flow, data, steps=steps, seed=seed)
    return float(torch.stack([(s - assets[i].feats).square().mean() for i, s in enumerate(samples)]).mean())


@dataclass(frozen=True)
class NormalScore:
    mean_degrees: float
    coverage: float


@torch.no_grad()
def decoded_normal_error(flow: nn.Module, decoder: nn.Module, norm: Normalisation, data: Path, *,
                         steps: int = 10, seed: int = 0) -> NormalScore:
    """Angles between the decoded SDF's normals and the true normals, pooled over assets."""
    assets = SLatAssetFolder(Path(data), need_surface=True)
    samples = sample_latents(flow, data, steps=steps, seed=seed)
    angles, coverage = [], []
    for i, feats in enumerate(samples):
        asset = assets[i]
        coords = torch.cat([torch.zeros(len(asset.coords), 1, dtype=torch.int32), asset.coords], 1)
        decoded = decoder(SparseTensor(coords, feats * norm.std + norm.mean))
        a, c = angular_errors_degrees(decoded.coords[:, 1:], decoded.feats[:, :8].float(),
                                      asset.points, asset.normals)  # type: ignore[arg-type]
        angles.append(a)
        coverage.append(c)
    pooled = torch.cat(angles)
    return NormalScore(float(pooled.mean()) if len(pooled) else 180.0, sum(coverage) / len(coverage))
