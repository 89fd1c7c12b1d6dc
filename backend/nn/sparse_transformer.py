"""Transformer blocks over sparse voxel tokens (``SparseTensor`` feats [N, C], coords [N, 4]).

Same parameters and key names as the dense blocks: the SLat flow's modulated cross block (full
self-attention among each sample's tokens) and the mesh decoder's plain block (windowed, swin-shifted
self-attention). Per-sample quantities (modulation, cross-attention context) are broadcast with
the batch column of ``coords``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from .attention import CrossAttention, SelfAttention, attention, constant_rows
from .norms import LayerNorm32
from .transformer import FeedForward, ModulatedCrossBlock, modulate

if TYPE_CHECKING:
    from .sparse_tensor import SparseTensor


def sample_indices(coords: torch.Tensor, batch_size: int) -> list[torch.Tensor] | None:
    """Row indices of each sample in ``coords`` [N, 4]; None when there is a single sample (all rows)."""
    if batch_size <= 1:
        return None
    batch = coords[:, 0]
    return [torch.nonzero(batch == b).squeeze(1) for b in range(batch_size)]


def per_sample(values: torch.Tensor, coords: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Broadcast per-sample rows [B, C] to the tokens: [1, C] for one sample, else [N, C]."""
    if batch_size <= 1:
        return values[:1]
    return values[coords[:, 0].long()]


def full_self_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, groups: list[torch.Tensor] | None
) -> torch.Tensor:
    """Attention among the tokens of each sample. q, k, v: [N, H, D] -> [N, H, D]."""
    if groups is None:
        return attention(q[None], k[None], v[None])[0]
    out = torch.empty_like(q)
    for idx in groups:
        out[idx] = attention(q[idx][None], k[idx][None], v[idx][None])[0]
    return out


def cross_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, groups: list[torch.Tensor] | None
) -> torch.Tensor:
    """Tokens of sample b attend to context b. q: [N, H, D], k/v: [B, Lc, H, D] -> [N, H, D]."""
    if groups is None:
        return attention(q[None], k[:1], v[:1])[0]
    out = torch.empty_like(q)
    for b, idx in enumerate(groups):
        out[idx] = attention(q[idx][None], k[b : b + 1], v[b : b + 1])[0]
    return out


def sparse_cross_attention(
    layer: CrossAttention, f: torch.Tensor, context: torch.Tensor, groups: list[torch.Tensor] | None
) -> torch.Tensor:
    """``layer`` on packed tokens: the tokens of sample b attend to context b. f: [N, C] -> [N, C].

    A sample whose context is constant (guidance's zero condition) takes ``layer.constant_output``.
    """
    same = constant_rows(context)
    if same is None:
        k, v = layer.context_kv(context)  # [B, Lc, H, D]
        return layer.to_out(cross_attention(layer.project_q(f), k, v, groups).flatten(-2))
    rows = [slice(None)] if groups is None else groups
    out = torch.empty_like(f)
    for b, idx in enumerate(rows):
        token = context[b : b + 1, :1]  # [1, 1, Cc]
        if bool(same[b]):
            out[idx] = layer.constant_output(token)[0].to(f.dtype)  # [1, C] broadcast over the rows
        else:
            out[idx] = layer.attend(f[idx][None], context[b : b + 1])[0]
    return out


class ModulatedSparseCrossBlock(ModulatedCrossBlock):
    """``ModulatedSparseTransformerCrossBlock``: the dense block's math on each sample's voxel tokens."""

    def forward(self, x: SparseTensor, t_emb: torch.Tensor, context: torch.Tensor) -> SparseTensor:  # type: ignore[override]
        """x: feats [N, C]; t_emb: [B, C]; context: [B, Lc, Cc] -> SparseTensor with feats [N, C]."""
        b = x.batch_size
        groups = sample_indices(x.coords, b)
        mods = [per_sample(m, x.coords, b) for m in self.modulation(t_emb)]  # 6 x [N or 1, C]
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mods
        f = x.feats  # [N, C]
        h = full_self_attention(
            *self.self_attn.project(modulate(self.norm1(f), shift_msa, scale_msa)), groups
        )
        f = f + gate_msa * self.self_attn.to_out(h.flatten(-2))
        f = f + sparse_cross_attention(self.cross_attn, self.norm2(f), context, groups)
        f = f + gate_mlp * self.mlp(modulate(self.norm3(f), shift_mlp, scale_mlp))
        return x.replace(f)


class SparseTransformerBlock(nn.Module):
    """Pre-norm block without modulation: LN32 -> (windowed) self-attention -> +; LN32 -> MLP -> +.

    ``window_size`` None means full attention per sample; otherwise attention runs inside cubic windows
    of that size, with every coordinate shifted by ``shift`` first (swin: 0 / window // 2 alternately).
    """

    def __init__(
        self,
        channels: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        window_size: int | None = None,
        shift: int = 0,
        qk_rms_norm: bool = False,
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift = shift
        self.norm1 = LayerNorm32(channels, elementwise_affine=False, eps=1e-6)
        self.norm2 = LayerNorm32(channels, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(channels, num_heads, qk_rms_norm=qk_rms_norm)
        self.mlp = FeedForward(channels, mlp_ratio)

    def _attend(self, x: SparseTensor, h: torch.Tensor) -> torch.Tensor:
        q, k, v = self.attn.project(h)  # [N, H, D] each
        if self.window_size is None:
            out = full_self_attention(q, k, v, sample_indices(x.coords, x.batch_size))
        else:
            from .sparse_attention import sparse_window_attention

            out = sparse_window_attention(q, k, v, x, self.window_size, self.shift)  # x: partition cached
        return self.attn.to_out(out.flatten(-2))  # [N, C]

    def forward(self, x: SparseTensor) -> SparseTensor:
        """x: feats [N, C] -> feats [N, C]."""
        f = x.feats
        f = f + self._attend(x, self.norm1(f))
        f = f + self.mlp(self.norm2(f))
        return x.replace(f)
