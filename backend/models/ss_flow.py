"""Sparse-structure flow model: a dense DiT over the 16^3 x 8 latent (``SparseStructureFlowModel``).

Forward (release ``sparse_structure_flow.py``): patchify -> ``input_layer`` -> + ``pos_emb`` ->
24 adaLN cross blocks in the compute dtype -> float32 parameter-free LayerNorm -> ``out_layer`` ->
unpatchify.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from backend.nn.attention import CrossAttention
from backend.nn.embeddings import TimestepEmbedder, grid_position_embedding
from backend.nn.transformer import ModulatedCrossBlock

from .configs import SSFlowConfig
from .precision import cast_torso


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """[B, C, X, Y, Z] -> [B, X/p * Y/p * Z/p, C * p^3] tokens (C order; channel = c * p^3 + offset)."""
    b, c, sx, sy, sz = x.shape
    h = x.reshape(b, c, sx // p, p, sy // p, p, sz // p, p)
    h = h.permute(0, 2, 4, 6, 1, 3, 5, 7)  # [B, X', Y', Z', C, p, p, p]
    return h.reshape(b, (sx // p) * (sy // p) * (sz // p), c * p**3)


def unpatchify(h: torch.Tensor, p: int, channels: int, grid: int) -> torch.Tensor:
    """Inverse of ``patchify``: [B, G^3, C * p^3] -> [B, C, G*p, G*p, G*p]."""
    b = h.shape[0]
    x = h.reshape(b, grid, grid, grid, channels, p, p, p)
    x = x.permute(0, 4, 1, 5, 2, 6, 3, 7)  # [B, C, G, p, G, p, G, p]
    return x.reshape(b, channels, grid * p, grid * p, grid * p)


class SparseStructureFlowModel(nn.Module):
    """Velocity model of the sparse-structure stage.

    Keys: ``pos_emb``, ``t_embedder.*``, ``input_layer``, ``blocks.N.*``, ``out_layer``.
    """

    def __init__(self, config: SSFlowConfig) -> None:
        super().__init__()
        self.config = config
        self.grid = config.resolution // config.patch_size
        c = config.model_channels
        self.compute_dtype = torch.float32
        self.t_embedder = TimestepEmbedder(c)
        # Persistent buffer: the release stores it in the checkpoint (meta on the meta device).
        self.pos_emb: torch.Tensor
        self.register_buffer("pos_emb", grid_position_embedding(self.grid, c, device=torch.empty(0).device))
        self.input_layer = nn.Linear(config.in_channels * config.patch_size**3, c)
        self.blocks = nn.ModuleList(
            ModulatedCrossBlock(
                c,
                config.cond_channels,
                config.heads,
                config.mlp_ratio,
                qk_rms_norm=config.qk_rms_norm,
                qk_rms_norm_cross=config.qk_rms_norm_cross,
            )
            for _ in range(config.num_blocks)
        )
        self.out_layer = nn.Linear(c, config.out_channels * config.patch_size**3)

    def set_compute_dtype(self, dtype: torch.dtype) -> None:
        """Run the transformer blocks in ``dtype`` (their Linear weights are cast); I/O stays float32."""
        cast_torso([self.blocks], dtype)
        self.compute_dtype = dtype

    def set_context_cache(self, size: int) -> None:
        """Cache cross-attention K/V of up to ``size`` distinct cond tensors (0 disables and clears)."""
        for module in self.blocks.modules():
            if isinstance(module, CrossAttention):
                module.cache_size = size
                module.clear_cache()

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x: [B, 8, 16, 16, 16], t: [B] (1000 * t), cond: [B, Lc, C_cond] -> velocity like x (float32)."""
        cfg = self.config
        expected = (cfg.in_channels, cfg.resolution, cfg.resolution, cfg.resolution)
        if tuple(x.shape[1:]) != expected:
            raise ValueError(f"expected x of shape [B, {', '.join(map(str, expected))}], got {list(x.shape)}")
        h = self.input_layer(patchify(x.float(), cfg.patch_size))  # [B, L, C]
        h = h + self.pos_emb[None]
        t_emb = self.t_embedder(t).to(self.compute_dtype)  # [B, C]
        h = h.to(self.compute_dtype)
        cond = cond.to(self.compute_dtype)
        for block in self.blocks:
            h = block(h, t_emb, cond)
        h = F.layer_norm(h.float(), h.shape[-1:])  # no affine, eps 1e-5
        h = self.out_layer(h)  # [B, L, C_out * p^3]
        return unpatchify(h, cfg.patch_size, cfg.out_channels, self.grid)
