"""Sinusoidal embeddings: the diffusion timestep embedder and the absolute 3D position embedding."""

from __future__ import annotations

import math

import torch
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of (fractional) timesteps, ``cat([cos, sin])`` as the release (cos first).

    t: [B] -> [B, dim] float32.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]  # [B, half]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # [B, 2 * half]
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)  # [B, dim]
    return emb


class TimestepEmbedder(nn.Module):
    """Timestep -> vector: sinusoid(256) -> Linear -> SiLU -> Linear. Keys ``mlp.0``, ``mlp.2``."""

    def __init__(self, hidden_size: int, frequency_size: int = 256) -> None:
        super().__init__()
        self.frequency_size = frequency_size
        self.mlp = nn.Sequential(
            nn.Linear(frequency_size, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size)
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """t: [B] (1000 * continuous time) -> [B, hidden_size] in the layer's dtype."""
        freq = timestep_embedding(t, self.frequency_size)  # [B, F]
        first: nn.Linear = self.mlp[0]  # type: ignore[assignment]
        return self.mlp(freq.to(first.weight.dtype))


def absolute_position_embedding(coords: torch.Tensor, channels: int) -> torch.Tensor:
    """The release's APE: per axis ``[sin(c*f), cos(c*f)]`` blocks in x, y, z order, zero-padded.

    ``f_i = 10000^(-i / F)`` with ``F = channels // 3 // 2``. coords: [N, 3] (any numeric dtype)
    -> [N, channels] float32.
    """
    n, axes = coords.shape
    freq_dim = channels // axes // 2
    freqs = 1.0 / (10000.0 ** (torch.arange(freq_dim, dtype=torch.float32, device=coords.device) / freq_dim))
    args = coords.reshape(-1).float()[:, None] * freqs[None]  # [N * 3, F]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1).reshape(n, -1)  # [N, 3 * 2F]
    if emb.shape[1] < channels:
        pad = torch.zeros(n, channels - emb.shape[1], dtype=emb.dtype, device=emb.device)
        emb = torch.cat([emb, pad], dim=-1)  # [N, channels]
    return emb


def grid_position_embedding(size: int, channels: int, device: torch.device | None = None) -> torch.Tensor:
    """APE of every cell of a ``size^3`` grid in C order (x slowest): [size^3, channels] float32."""
    axis = torch.arange(size, device=device)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)  # [S^3, 3]
    return absolute_position_embedding(grid, channels)
