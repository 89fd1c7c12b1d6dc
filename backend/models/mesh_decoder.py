"""Structured-latent mesh decoder (``SLatMeshDecoder``): swin sparse transformer + 2 subdivisions.

Release ``structured_latent_vae/{base,decoder_mesh}.py``: ``input_layer`` (8 -> 768) + APE of the 64^3
coords -> 12 windowed blocks (window 8, shift 4 on odd blocks) -> two ``SparseSubdivideBlock3d``
(768 -> 192 at 128^3, 192 -> 96 at 256^3) -> float32 ``out_layer`` (96 -> 101). The mesh extraction
(marching cubes on the per-voxel features) is not a network and lives elsewhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from backend.nn.embeddings import absolute_position_embedding
from backend.nn.sparse_conv import SparseConv3d, SparseLinear
from backend.nn.sparse_norm import SparseGroupNorm32
from backend.nn.sparse_transformer import SparseTransformerBlock

from .configs import MeshDecoderConfig
from .precision import cast_torso

if TYPE_CHECKING:
    from backend.nn.sparse_tensor import SparseTensor

FEATURE_LAYOUT = {"sdf": (0, 8), "deform": (8, 32), "weights": (32, 53), "color": (53, 101)}
"Channel ranges of the decoder output per 256^3 voxel (release ``cube2mesh._calc_layout``)."


class SparseSiLU(nn.Module):
    """SiLU on the features of a SparseTensor."""

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace(F.silu(x.feats))


class SparseSubdivideBlock3d(nn.Module):
    """GN32 -> SiLU -> subdivide (each voxel -> 8 children) -> conv3 -> GN32 -> SiLU -> conv3, + skip.

    Keys: ``act_layers.0`` (GroupNorm), ``out_layers.{0,3}.conv`` (3^3 convs), ``out_layers.1`` (GroupNorm),
    ``skip_connection.conv`` (1^3 conv) when the width changes.
    """

    def __init__(self, channels: int, out_channels: int, num_groups: int = 32) -> None:
        super().__init__()
        self.act_layers = nn.Sequential(SparseGroupNorm32(num_groups, channels), SparseSiLU())
        self.out_layers = nn.Sequential(
            SparseConv3d(channels, out_channels, 3),
            SparseGroupNorm32(num_groups, out_channels),
            SparseSiLU(),
            SparseConv3d(out_channels, out_channels, 3),
        )
        self.skip_connection = (
            SparseConv3d(channels, out_channels, 1) if channels != out_channels else nn.Identity()
        )

    def forward(self, x: SparseTensor) -> SparseTensor:
        """x: feats [N, C] at resolution R -> feats [8N, C_out] at 2R."""
        from backend.nn.sparse_resample import sparse_subdivide

        h = sparse_subdivide(self.act_layers(x))
        h = self.out_layers(h)
        skip = self.skip_connection(sparse_subdivide(x))
        return h.replace(h.feats + skip.feats)


class SLatMeshDecoder(nn.Module):
    """Structured latent (feats [N, 8] at 64^3) -> SparseTensor of 101 (or 53) channels at 256^3."""

    def __init__(self, config: MeshDecoderConfig) -> None:
        super().__init__()
        self.config = config
        c = config.model_channels
        self.compute_dtype = torch.float32
        self.input_layer = SparseLinear(config.latent_channels, c)
        windowed = config.attn_mode == "swin"
        self.blocks = nn.ModuleList(
            SparseTransformerBlock(
                c,
                config.heads,
                config.mlp_ratio,
                qk_rms_norm=config.qk_rms_norm,
                window_size=config.window_size if windowed else None,
                shift=(config.window_size // 2) * (i % 2) if windowed else 0,
            )
            for i in range(config.num_blocks)
        )
        self.upsample = nn.ModuleList(
            [SparseSubdivideBlock3d(c, c // 4), SparseSubdivideBlock3d(c // 4, c // 8)]
        )
        self.out_layer = SparseLinear(c // 8, config.out_channels)

    def set_compute_dtype(self, dtype: torch.dtype) -> None:
        """Run the transformer and subdivision blocks in ``dtype``; I/O layers and norms stay float32."""
        cast_torso([self.blocks, self.upsample], dtype)
        self.compute_dtype = dtype

    def forward(self, x: SparseTensor, channels: int | None = None) -> SparseTensor:
        """x: feats [N, 8], coords at 64^3 -> feats [64 N, 101] float32, coords at 256^3; ``channels``: only the
        first ones of the output layer (32: sdf + deformation, what marching cubes reads; 53 with FlexiCubes'
        weights), which saves that much of the largest tensor of the decoder."""
        h = self.input_layer(x.replace(x.feats.float()))  # [N, C]
        ape = absolute_position_embedding(x.coords[:, 1:], self.config.model_channels)  # [N, C]
        h = h.replace((h.feats + ape).to(self.compute_dtype))
        for block in self.blocks:
            h = block(h)
        for up in self.upsample:
            h = up(h)
        weight, bias = self.out_layer.weight, self.out_layer.bias
        if channels is not None and channels < self.out_layer.out_features:
            weight, bias = weight[:channels], bias[:channels]
        return h.replace(F.linear(h.feats.float(), weight, bias))  # [64 N, C_out or channels]
