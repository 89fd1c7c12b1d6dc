"""TRELLIS' rectified-flow training convention, matched to the engine's sampler (``backend/sampling.py``).

    x_t = (1 - t) x0 + (sigma_min + (1 - sigma_min) t) eps          t in (0, 1), t = 1 is pure noise
    v*  = (1 - sigma_min) eps - x0                                   (= dx_t / dt)

The model is called as ``model(x_t, 1000 t, cond)`` and regresses ``v*``; the engine integrates
``x <- x - (t - t_next) v`` from t = 1 to 0 with the same call, so a model trained here samples there.
Times are logit-normal, ``t = sigmoid(N(mean, std))`` (TRELLIS trains its image-conditioned flows with mean 1,
std 1, and sigma_min 1e-5); a sample's condition is replaced by zeros, the engine's negative condition, with
probability ``p_uncond`` (0.1 there), which is what classifier-free guidance needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def diffuse(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, sigma_min: float) -> torch.Tensor:
    """``x_t`` for clean ``x0`` [B, ...], ``noise`` like it and ``t`` [B]."""
    t = t.view(-1, *([1] * (x0.dim() - 1)))
    return (1.0 - t) * x0 + (sigma_min + (1.0 - sigma_min) * t) * noise


def target_velocity(x0: torch.Tensor, noise: torch.Tensor, sigma_min: float) -> torch.Tensor:
    """The regression target ``(1 - sigma_min) eps - x0``."""
    return (1.0 - sigma_min) * noise - x0


def predicted_x0(x_t: torch.Tensor, velocity: torch.Tensor, t: torch.Tensor, sigma_min: float) -> torch.Tensor:
    """The clean sample a velocity implies: ``(1 - sigma_min) x_t - (sigma_min + (1 - sigma_min) t) v``.

    Exact for the true velocity: substituting ``x_t`` and ``v*`` above gives back ``x0``.
    """
    t = t.view(-1, *([1] * (x_t.dim() - 1)))
    return (1.0 - sigma_min) * x_t - (sigma_min + (1.0 - sigma_min) * t) * velocity


@dataclass(frozen=True)
class SampleDraw:
    """The random numbers of one training sample, drawn from its own generator in a fixed order."""

    noise: torch.Tensor  # like x0
    t: float
    drop_cond: bool
    generator: torch.Generator  # what follows (surface point choice) keeps drawing from it


def draw_sample(seed: int, shape: tuple[int, ...], t_mean: float, t_std: float, p_uncond: float) -> SampleDraw:
    """Noise, time and condition dropout of one sample from a CPU generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(shape, generator=generator)
    t = torch.sigmoid(torch.randn((), generator=generator) * t_std + t_mean).item()
    drop = torch.rand((), generator=generator).item() < p_uncond
    return SampleDraw(noise, t, drop, generator)
