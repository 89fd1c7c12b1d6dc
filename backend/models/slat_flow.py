"""Structured-latent flow model: a sparse U-DiT over the occupied 64^3 voxels (``SLatFlowModel``).

Release ``structured_latent_flow.py``: ``input_layer`` (8 -> 128) -> input res blocks (the last one
average-pools to 32^3 and widens to 1024) -> + APE of the 32^3 coords -> 24 modulated sparse cross
blocks (full self-attention per sample) -> output res blocks with U-Net skips (the first upsamples back
to the 64^3 voxels) -> float32 parameter-free LayerNorm -> ``out_layer`` (128 -> 8).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from backend.nn.attention import CrossAttention
from backend.nn.embeddings import TimestepEmbedder, absolute_position_embedding
from backend.nn.norms import LayerNorm32
from backend.nn.sparse_conv import SparseConv3d, SparseLinear
from backend.nn.sparse_transformer import ModulatedSparseCrossBlock, per_sample
from backend.nn.transformer import modulate

from .configs import SLatFlowConfig
from .precision import cast_torso

if TYPE_CHECKING:
    from backend.nn.sparse_tensor import SparseTensor


class SparseResBlock3d(nn.Module):
    """Timestep-modulated sparse res block, optionally down- or up-sampling its input first.

    ``h = conv2(SiLU(LN(conv1(SiLU(LN_affine(x)))) * (1 + scale) + shift)) + skip(x)`` where
    ``(scale, shift) = emb_layers(t_emb)``; convs are 3^3 submanifold; skip is a linear map when the
    width changes.
    """

    def __init__(
        self, channels: int, emb_channels: int, out_channels: int, resample: str | None = None
    ) -> None:
        super().__init__()
        if resample not in (None, "down", "up"):
            raise ValueError(f"resample must be None, 'down' or 'up', got {resample!r}")
        self.resample = resample
        self.norm1 = LayerNorm32(channels, elementwise_affine=True, eps=1e-6)
        self.norm2 = LayerNorm32(out_channels, elementwise_affine=False, eps=1e-6)
        self.conv1 = SparseConv3d(channels, out_channels, 3)
        self.conv2 = SparseConv3d(out_channels, out_channels, 3)
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels))
        self.skip_connection = (
            SparseLinear(channels, out_channels) if channels != out_channels else nn.Identity()
        )

    def _resample(self, x: SparseTensor, fine: SparseTensor | None) -> SparseTensor:
        from backend.nn.sparse_resample import sparse_downsample, sparse_upsample

        if self.resample == "down":
            return sparse_downsample(x, 2)
        if self.resample == "up":
            if fine is None:
                raise ValueError("an upsampling block needs the fine-level tensor")
            return sparse_upsample(x, fine)
        return x

    def forward(self, x: SparseTensor, t_emb: torch.Tensor, fine: SparseTensor | None = None) -> SparseTensor:
        """x: feats [N, C_in]; t_emb: [B, C_emb]; fine: the tensor to upsample onto -> feats [N', C_out]."""
        scale, shift = self.emb_layers(t_emb).to(x.feats.dtype).chunk(2, dim=1)  # [B, C_out] each
        x = self._resample(x, fine)
        h = self.conv1(x.replace(F.silu(self.norm1(x.feats))))  # [N', C_out]
        b = x.batch_size
        f = modulate(self.norm2(h.feats), per_sample(shift, x.coords, b), per_sample(scale, x.coords, b))
        h = self.conv2(h.replace(F.silu(f)))
        return h.replace(h.feats + self.skip_connection(x).feats)


class SLatFlowModel(nn.Module):
    """Velocity model of the structured-latent stage.

    Keys: ``t_embedder.*``, ``input_layer``, ``input_blocks.{0,1}``, ``blocks.N``, ``out_blocks.{0,1}``,
    ``out_layer``.
    """

    def __init__(self, config: SLatFlowConfig) -> None:
        super().__init__()
        self.config = config
        c = config.model_channels
        io = list(config.io_block_channels or ())
        n_res = config.num_io_res_blocks
        self.compute_dtype = torch.float32
        self.t_embedder = TimestepEmbedder(c)
        self.input_layer = SparseLinear(config.in_channels, io[0])
        inputs: list[SparseResBlock3d] = []
        for chs, next_chs in zip(io, [*io[1:], c], strict=True):
            inputs.extend(SparseResBlock3d(chs, c, chs) for _ in range(n_res - 1))
            inputs.append(SparseResBlock3d(chs, c, next_chs, resample="down"))
        self.input_blocks = nn.ModuleList(inputs)
        self.blocks = nn.ModuleList(
            ModulatedSparseCrossBlock(
                c,
                config.cond_channels,
                config.heads,
                config.mlp_ratio,
                qk_rms_norm=config.qk_rms_norm,
                qk_rms_norm_cross=config.qk_rms_norm_cross,
            )
            for _ in range(config.num_blocks)
        )
        skip = 2 if config.use_skip_connection else 1
        outputs: list[SparseResBlock3d] = []
        for chs, prev_chs in zip(reversed(io), [c, *reversed(io[1:])], strict=True):
            outputs.append(SparseResBlock3d(prev_chs * skip, c, chs, resample="up"))
            outputs.extend(SparseResBlock3d(chs * skip, c, chs) for _ in range(n_res - 1))
        self.out_blocks = nn.ModuleList(outputs)
        self.out_layer = SparseLinear(io[0], config.out_channels)

    def set_compute_dtype(self, dtype: torch.dtype) -> None:
        """Run the res blocks and transformer blocks in ``dtype``; I/O layers and norms stay float32."""
        cast_torso([self.input_blocks, self.blocks, self.out_blocks], dtype)
        self.compute_dtype = dtype

    def set_context_cache(self, size: int) -> None:
        """Cache cross-attention K/V of up to ``size`` distinct cond tensors (0 disables and clears)."""
        for module in self.blocks.modules():
            if isinstance(module, CrossAttention):
                module.cache_size = size
                module.clear_cache()

    def forward(self, x: SparseTensor, t: torch.Tensor, cond: torch.Tensor) -> SparseTensor:
        """x: feats [N, 8] at 64^3 coords; t: [B] (1000 t); cond: [B, Lc, C_cond] -> feats [N, 8] float32."""
        dtype = self.compute_dtype
        h = self.input_layer(x.replace(x.feats.float()))
        h = h.replace(h.feats.to(dtype))
        t_emb = self.t_embedder(t).to(dtype)  # [B, C]
        cond = cond.to(dtype)
        skips: list[SparseTensor] = []
        for block in self.input_blocks:
            h = block(h, t_emb)
            skips.append(h)
        ape = absolute_position_embedding(h.coords[:, 1:], self.config.model_channels)  # [M, C]
        h = h.replace(h.feats + ape.to(dtype))
        for block in self.blocks:
            h = block(h, t_emb, cond)
        fines = [x, *skips[:-1]]  # the tensor each upsampling block maps back onto
        for block, skip, fine in zip(self.out_blocks, reversed(skips), reversed(fines), strict=True):
            if self.config.use_skip_connection:
                h = h.replace(torch.cat([h.feats, skip.feats], dim=1))
            h = block(h, t_emb, fine if block.resample == "up" else None)
        h = h.replace(F.layer_norm(h.feats.float(), h.feats.shape[-1:]))  # no affine, eps 1e-5
        return self.out_layer(h)
