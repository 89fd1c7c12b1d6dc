"""Normalisation layers that always compute in float32 (the release's LayerNorm32 family).

The torso may run in float16/bfloat16; these layers upcast their input, normalise with float32
parameters and return the input's dtype, exactly like the release's ``LayerNorm32``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def upcast(x: torch.Tensor) -> torch.Tensor:
    """Half-precision tensors as float32; float32/float64 unchanged."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


HALF_ROWS = 1 << 14
"""Rows of a half-precision [N, C] input normalised at a time: the float32 copy and its result stay bounded (the
slat-flow's [2N, 2048] skip joins made them the latent stage's largest tensors, 0.6 GiB at 20k voxels)."""


class LayerNorm32(nn.LayerNorm):
    """``nn.LayerNorm`` evaluated in float32 (or wider); the output has the input's dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or len(x) <= HALF_ROWS or x.dtype not in (torch.float16, torch.bfloat16):
            return super().forward(upcast(x)).to(x.dtype)
        out = torch.empty_like(x)  # [N, C]: each row is normalised on its own, so by row chunks
        for start in range(0, len(x), HALF_ROWS):
            out[start:start + HALF_ROWS] = super().forward(x[start:start + HALF_ROWS].float()).to(x.dtype)
        return out


class ChannelLayerNorm32(LayerNorm32):
    """LayerNorm over the channel axis of a [B, C, *spatial] tensor, computed in float32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.movedim(1, -1)  # [B, *spatial, C]
        h = super().forward(h)
        return h.movedim(-1, 1).contiguous()  # [B, C, *spatial]


class MultiHeadRMSNorm(nn.Module):
    """Per-head RMS norm of queries/keys: ``normalize(x) * gamma[H, D] * sqrt(D)`` in float32.

    Key: ``gamma`` of shape [heads, dim] (kept in float32).
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(heads, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., H, D] -> same shape and dtype."""
        h = F.normalize(upcast(x), dim=-1)  # [..., H, D]
        return (h * self.gamma * self.scale).to(x.dtype)
