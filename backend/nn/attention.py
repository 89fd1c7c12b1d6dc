"""Multi-head attention layers named like the release (``to_qkv``, ``to_q``/``to_kv``, ``to_out``).

Tensors use the token-major layout [B, L, H, D]; the core is ``F.scaled_dot_product_attention``
(scale 1/sqrt(D)). The projections are exposed separately so the sparse blocks can reuse them on
packed features [N, C].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .norms import MultiHeadRMSNorm


def constant_rows(context: torch.Tensor) -> torch.Tensor | None:
    """[B] bool: the samples whose context tokens are all equal, or None when there is none (or ``context``
    has no data to compare: the meta device).

    Guidance's negative condition is all zeros, so every key of its cross-attention is the same: softmax over
    equal scores is uniform, and the output is that one value row whatever the query. Attending to one token
    is the same function at a fraction of the cost (about a fifth of an ss-flow forward).

    Only without autograd (sampling): in training the shortcut would leave ``to_q`` and the keys out of the
    graph whenever a batch's rows are all dropped conditions, and DDP then waits for gradients that never
    come. Their true gradient there is zero either way, so training takes the full path.
    """
    if torch.is_grad_enabled() or context.device.type == "meta" or context.shape[1] == 0:
        return None
    same = (context == context[:, :1]).flatten(1).all(dim=1)  # [B]
    return same if bool(same.any()) else None


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention. q: [B, Lq, H, D], k/v: [B, Lk, H, D] -> [B, Lq, H, D]."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)  # [B, Lq, H, D]


class SelfAttention(nn.Module):
    """Self-attention with fused ``to_qkv`` and optional per-head RMS norm of q and k."""

    def __init__(
        self, channels: int, num_heads: int, qk_rms_norm: bool = False, qkv_bias: bool = True
    ) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"channels {channels} not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = channels // num_heads
        self.qk_rms_norm = qk_rms_norm
        self.to_qkv = nn.Linear(channels, 3 * channels, bias=qkv_bias)
        if qk_rms_norm:
            self.q_rms_norm = MultiHeadRMSNorm(self.head_dim, num_heads)
            self.k_rms_norm = MultiHeadRMSNorm(self.head_dim, num_heads)
        self.to_out = nn.Linear(channels, channels)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: [..., L, C] -> q, k, v each [..., L, H, D] (q, k RMS-normed when configured)."""
        qkv = self.to_qkv(x).unflatten(-1, (3, self.num_heads, self.head_dim))  # [..., L, 3, H, D]
        q, k, v = qkv.unbind(dim=-3)
        if self.qk_rms_norm:
            q = self.q_rms_norm(q)
            k = self.k_rms_norm(k)
        return q, k, v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, L, C] -> [B, L, C]."""
        h = attention(*self.project(x))  # [B, L, H, D]
        return self.to_out(h.flatten(-2))


class CrossAttention(nn.Module):
    """Cross-attention: ``to_q`` on the tokens, ``to_kv`` on the context.

    The K/V of a constant context can be cached across sampler steps: ``cache_size`` (0 = off) is the
    number of distinct context tensors remembered (2 covers cond and neg_cond under CFG). The cache
    key is the tensor object and its in-place version counter; call ``clear_cache`` to drop it.
    """

    def __init__(
        self,
        channels: int,
        ctx_channels: int,
        num_heads: int,
        qk_rms_norm: bool = False,
        qkv_bias: bool = True,
    ) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"channels {channels} not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = channels // num_heads
        self.qk_rms_norm = qk_rms_norm
        self.to_q = nn.Linear(channels, channels, bias=qkv_bias)
        self.to_kv = nn.Linear(ctx_channels, 2 * channels, bias=qkv_bias)
        if qk_rms_norm:
            self.q_rms_norm = MultiHeadRMSNorm(self.head_dim, num_heads)
            self.k_rms_norm = MultiHeadRMSNorm(self.head_dim, num_heads)
        self.to_out = nn.Linear(channels, channels)
        self.cache_size = 0
        self._cache: list[tuple[torch.Tensor, int, torch.Tensor, torch.Tensor]] = []

    def clear_cache(self) -> None:
        """Forget every cached context K/V."""
        self._cache.clear()

    def project_q(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., L, C] -> q [..., L, H, D]."""
        q = self.to_q(x).unflatten(-1, (self.num_heads, self.head_dim))
        return self.q_rms_norm(q) if self.qk_rms_norm else q

    def context_kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """context: [B, Lc, Cc] -> k, v each [B, Lc, H, D] (from the cache when enabled and valid)."""
        for ctx, version, k, v in self._cache:
            if ctx is context and version == context._version:
                return k, v
        kv = self.to_kv(context).unflatten(-1, (2, self.num_heads, self.head_dim))  # [B, Lc, 2, H, D]
        k, v = kv.unbind(dim=-3)
        if self.qk_rms_norm:
            k = self.k_rms_norm(k)
        if self.cache_size > 0:
            self._cache = [*self._cache, (context, context._version, k, v)][-self.cache_size :]
        return k, v

    def constant_output(self, token: torch.Tensor) -> torch.Tensor:
        """The output for a context whose tokens all equal ``token`` [B, 1, Cc]: [B, 1, C], any query."""
        v = self.to_kv(token).unflatten(-1, (2, self.num_heads, self.head_dim))[..., 1, :, :]  # [B, 1, H, D]
        return self.to_out(v.flatten(-2))

    def attend(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """The full computation. x: [B, L, C], context: [B, Lc, Cc] -> [B, L, C]."""
        k, v = self.context_kv(context)
        h = attention(self.project_q(x), k, v)  # [B, L, H, D]
        return self.to_out(h.flatten(-2))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """x: [B, L, C], context: [B, Lc, Cc] -> [B, L, C]; a constant context's rows take ``constant_output``."""
        same = constant_rows(context)
        if same is None:
            return self.attend(x, context)
        out = torch.empty_like(x)
        out[same] = self.constant_output(context[same, :1]).to(x.dtype).expand(-1, x.shape[1], -1)
        if not bool(same.all()):
            out[~same] = self.attend(x[~same], context[~same])
        return out
