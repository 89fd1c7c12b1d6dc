"""Dense transformer pieces of the flow models: the MLP and the adaLN-modulated cross block."""

from __future__ import annotations

import torch
from torch import nn

from .attention import CrossAttention, SelfAttention
from .norms import LayerNorm32


class FeedForward(nn.Module):
    """Linear -> GELU(tanh) -> Linear. Keys ``mlp.0``, ``mlp.2``."""

    def __init__(self, channels: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        hidden = int(channels * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: ``x * (1 + scale) + shift`` with shift/scale broadcast over the token axis."""
    return x * (1 + scale) + shift


class ModulatedCrossBlock(nn.Module):
    """The release's ``ModulatedTransformerCrossBlock``: adaLN self-attn, plain cross-attn, adaLN MLP.

    norm1/norm3: LayerNorm32 without affine; norm2: affine LayerNorm32; eps 1e-6. The modulation is
    ``SiLU -> Linear(C, 6C)`` chunked into shift/scale/gate for attention, then for the MLP.
    """

    def __init__(
        self,
        channels: int,
        ctx_channels: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qk_rms_norm: bool = False,
        qk_rms_norm_cross: bool = False,
    ) -> None:
        super().__init__()
        self.norm1 = LayerNorm32(channels, elementwise_affine=False, eps=1e-6)
        self.norm2 = LayerNorm32(channels, elementwise_affine=True, eps=1e-6)
        self.norm3 = LayerNorm32(channels, elementwise_affine=False, eps=1e-6)
        self.self_attn = SelfAttention(channels, num_heads, qk_rms_norm=qk_rms_norm)
        self.cross_attn = CrossAttention(channels, ctx_channels, num_heads, qk_rms_norm=qk_rms_norm_cross)
        self.mlp = FeedForward(channels, mlp_ratio)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(channels, 6 * channels))

    def modulation(self, t_emb: torch.Tensor) -> list[torch.Tensor]:
        """t_emb: [B, C] -> [shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp], each [B, C]."""
        return list(self.adaLN_modulation(t_emb).chunk(6, dim=1))

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """x: [B, L, C], t_emb: [B, C], context: [B, Lc, Cc] -> [B, L, C]."""
        mods = [m[:, None] for m in self.modulation(t_emb)]  # 6 x [B, 1, C]
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mods
        x = x + gate_msa * self.self_attn(modulate(self.norm1(x), shift_msa, scale_msa))
        x = x + self.cross_attn(self.norm2(x), context)
        x = x + gate_mlp * self.mlp(modulate(self.norm3(x), shift_mlp, scale_mlp))
        return x
