"""Sparse-structure decoder: 3D convolutions from the 16^3 x 8 latent to 64^3 occupancy logits.

Release ``sparse_structure_vae.py::SparseStructureDecoder`` with ``norm_type="layer"``
(ChannelLayerNorm32, eps 1e-5, affine). Torso (``middle_block``, ``blocks``) in the compute dtype;
``input_layer`` and ``out_layer`` in float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from backend.nn.norms import ChannelLayerNorm32

from .configs import SSDecoderConfig
from .precision import cast_torso


def pixel_shuffle_3d(x: torch.Tensor, factor: int) -> torch.Tensor:
    """[B, C * f^3, X, Y, Z] -> [B, C, f X, f Y, f Z]; channel = c * f^3 + (i * f + j) * f + k."""
    b, c, sx, sy, sz = x.shape
    c_out = c // factor**3
    h = x.reshape(b, c_out, factor, factor, factor, sx, sy, sz)
    h = h.permute(0, 1, 5, 2, 6, 3, 7, 4)  # [B, C, X, f, Y, f, Z, f]
    return h.reshape(b, c_out, sx * factor, sy * factor, sz * factor)


class ResBlock3d(nn.Module):
    """norm1 -> SiLU -> conv1 -> norm2 -> SiLU -> conv2, plus the identity (channels unchanged)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm1 = ChannelLayerNorm32(channels)
        self.norm2 = ChannelLayerNorm32(channels)
        self.conv1 = nn.Conv3d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv3d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return x + h


class UpsampleBlock3d(nn.Module):
    """Conv3d(C -> 8 C_out, k3) then 3D pixel shuffle by 2. Key ``conv``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels * 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_shuffle_3d(self.conv(x), 2)  # [B, C_out, 2X, 2Y, 2Z]


class SparseStructureDecoder(nn.Module):
    """Latent [B, 8, 16, 16, 16] -> occupancy logits [B, 1, 64, 64, 64] (float32)."""

    def __init__(self, config: SSDecoderConfig) -> None:
        super().__init__()
        self.config = config
        chs = config.channels
        self.compute_dtype = torch.float32
        self.input_layer = nn.Conv3d(config.latent_channels, chs[0], 3, padding=1)
        self.middle_block = nn.Sequential(*(ResBlock3d(chs[0]) for _ in range(config.num_res_blocks_middle)))
        blocks: list[nn.Module] = []
        for i, ch in enumerate(chs):
            blocks.extend(ResBlock3d(ch) for _ in range(config.num_res_blocks))
            if i < len(chs) - 1:
                blocks.append(UpsampleBlock3d(ch, chs[i + 1]))
        self.blocks = nn.ModuleList(blocks)
        self.out_layer = nn.Sequential(
            ChannelLayerNorm32(chs[-1]), nn.SiLU(), nn.Conv3d(chs[-1], config.out_channels, 3, padding=1)
        )

    def set_compute_dtype(self, dtype: torch.dtype) -> None:
        """Run ``middle_block`` and ``blocks`` in ``dtype``; the input and output layers stay float32."""
        cast_torso([self.middle_block, self.blocks], dtype)
        self.compute_dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C_lat, R, R, R] -> logits [B, C_out, 4R, 4R, 4R] (float32)."""
        h = self.input_layer(x.float()).to(self.compute_dtype)  # [B, C0, R, R, R]
        h = self.middle_block(h)
        for block in self.blocks:
            h = block(h)
        return self.out_layer(h.float())  # [B, C_out, 4R, 4R, 4R]
