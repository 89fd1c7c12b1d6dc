"""Cross-attention against an all-zero context, computed without attention.

YOSO conditions both networks on ``zeros(1, 257, 1024)``. In SD2 cross-attention ``to_k`` and ``to_v`` have
no bias, so K = V = 0: every softmax row is uniform over zero values and the attention output is 0, so
the layer returns ``to_out[0](0) = to_out[0].bias``, whatever the query and the number of context tokens.
This processor returns that bias directly, skipping the query projection and the attention.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class ZeroContextCrossAttnProcessor:
    """Attention processor for cross-attention layers that only ever see an all-zero context."""

    def __call__(self, attn: nn.Module, hidden_states: torch.Tensor, *args: Any,
                 **kwargs: Any) -> torch.Tensor:
        out_proj = attn.to_out[0]  # Linear(inner_dim -> query_dim)
        bias = out_proj.bias if out_proj.bias is not None else torch.zeros(
            out_proj.out_features, device=hidden_states.device, dtype=hidden_states.dtype)
        out = bias.to(hidden_states.dtype).expand_as(hidden_states)  # [B, N, C]
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor


def applies_to(attn: nn.Module) -> bool:
    """Whether ``attn`` is a cross-attention layer for which the shortcut is exact."""
    return bool(
        getattr(attn, "is_cross_attention", False)
        and getattr(attn, "to_k", None) is not None and attn.to_k.bias is None
        and getattr(attn, "to_v", None) is not None and attn.to_v.bias is None
        and getattr(attn, "norm_cross", None) is None
        and getattr(attn, "spatial_norm", None) is None
        and getattr(attn, "group_norm", None) is None
    )


def install_zero_context(model: nn.Module) -> int:
    """Give every eligible cross-attention layer of ``model`` the shortcut; returns how many got it."""
    count = 0
    for module in model.modules():
        set_processor = getattr(module, "set_processor", None)
        if callable(set_processor) and applies_to(module):
            set_processor(ZeroContextCrossAttnProcessor())
            count += 1
    return count
