"""Submanifold sparse convolution (spconv ``SubMConv3d`` semantics) and the per-voxel linear layer.

Outputs exist only at the input voxels; missing neighbours count as zero. With spconv's KRSC weight
``W [out, kx, ky, kz, in]`` the result equals, at every active voxel,
``F.conv3d(dense, W.permute(0, 4, 1, 2, 3), padding=k // 2)`` on the densified grid (coordinate columns
1..3 = dense D, H, W). Computation: gather-GEMM-scatter per kernel offset over a cached kernel map, in
the features' dtype.

Release quirk, kept by default for 1x1x1 kernels: spconv 2.x (2.3.6 as pinned, and 2.3.8) runs them as
``feats @ weight.view(in, out)``, i.e. it reinterprets the KRSC memory [out, in] as [in, out] instead of
transposing it (spconv issue #450). The release's mesh decoder uses such convs as skip connections, so the
checkpoint's weights are meant to be read that way; ``spconv_1x1=False`` gives the textbook 1x1 conv.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .sparse_neighbors import KernelMap, kernel_map
from .sparse_tensor import SparseTensor

CHUNK_ROWS = 1 << 18
"Most (output, input) pairs of one kernel offset processed at once: bounds the gather buffers' memory."


def submanifold_conv(
    feats: torch.Tensor, kmap: KernelMap, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """feats [N, C_in], KRSC weight [C_out, k, k, k, C_in], bias [C_out] -> [N, C_out].

    Per kernel offset: gather the neighbours that exist, multiply by that tap, add into their outputs.
    """
    c_out, c_in = weight.shape[0], weight.shape[-1]
    w = weight.reshape(c_out, -1, c_in)  # [C_out, K, C_in] (a view: no copy per tap)
    out = F.linear(feats, w[:, w.shape[1] // 2], bias)  # [N, C_out], the centre tap covers every voxel
    if torch.is_grad_enabled() and (feats.requires_grad or weight.requires_grad):
        return _add_taps_autograd(out, feats, kmap, w)
    _add_taps_buffered(out, feats, kmap, w)
    return out


def _add_taps_autograd(
    out: torch.Tensor, feats: torch.Tensor, kmap: KernelMap, w: torch.Tensor
) -> torch.Tensor:
    """Out-of-place accumulation of the off-centre taps (differentiable). w: [C_out, K, C_in]."""
    for k, pair in enumerate(kmap.pairs):
        if pair is not None:
            out = out.index_add(0, pair[0], feats.index_select(0, pair[1]) @ w[:, k].t())
    return out


def _add_taps_buffered(out: torch.Tensor, feats: torch.Tensor, kmap: KernelMap, w: torch.Tensor) -> None:
    """In-place accumulation through two reused buffers (large CPU allocations page-fault every time)."""
    longest = max((p[0].numel() for p in kmap.pairs if p is not None), default=0)
    rows = max(1, min(longest, CHUNK_ROWS))
    gathered = feats.new_empty(rows, feats.shape[1])  # [R, C_in]
    product = feats.new_empty(rows, out.shape[1])  # [R, C_out]
    for k, pair in enumerate(kmap.pairs):
        if pair is None:
            continue
        for out_rows, in_rows in zip(pair[0].split(rows), pair[1].split(rows), strict=True):
            m = out_rows.numel()
            torch.index_select(feats, 0, in_rows, out=gathered[:m])  # [M, C_in]
            torch.mm(gathered[:m], w[:, k].t(), out=product[:m])  # [M, C_out]
            out.index_add_(0, out_rows, product[:m])


class SubMConv3dParams(nn.Module):
    """Holds a submanifold conv's parameters under spconv's names: ``weight`` [out, k, k, k, in], ``bias``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool) -> None:
        super().__init__()
        k = kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, k, k, k, in_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform(+-1/sqrt(fan_in)) like ``nn.Conv3d``'s default."""
        bound = 1.0 / math.sqrt(self.weight[0].numel())
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)


class SparseConv3d(nn.Module):
    """Submanifold 3D convolution, stride 1. Keys: ``conv.weight`` [out, k, k, k, in], ``conv.bias`` [out]."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        bias: bool = True,
        dilation: int = 1,
        spconv_1x1: bool = True,
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.spconv_1x1 = spconv_1x1
        self.conv = SubMConv3dParams(in_channels, out_channels, kernel_size, bias)

    def forward(self, x: SparseTensor) -> SparseTensor:
        """x: feats [N, C_in] -> feats [N, C_out] on the same coords."""
        weight, bias = self.conv.weight, self.conv.bias
        if self.kernel_size == 1:
            if self.spconv_1x1:  # spconv's reading of the weight memory (see the module doc)
                matrix = weight.reshape(self.in_channels, self.out_channels).t()  # [C_out, C_in]
            else:
                matrix = weight.reshape(self.out_channels, self.in_channels)  # [C_out, C_in]
            return x.replace(F.linear(x.feats, matrix, bias))
        kmap = kernel_map(x, self.kernel_size, self.dilation)
        return x.replace(submanifold_conv(x.feats, kmap, weight, bias))

    def extra_repr(self) -> str:
        sizes = f"{self.in_channels}, {self.out_channels}"
        quirk = ", spconv_1x1=True" if self.kernel_size == 1 and self.spconv_1x1 else ""
        return f"{sizes}, kernel_size={self.kernel_size}, dilation={self.dilation}{quirk}"


class SparseLinear(nn.Linear):
    """``nn.Linear`` on the features of a SparseTensor. Keys: ``weight`` [out, in], ``bias`` [out]."""

    def forward(self, x: SparseTensor) -> SparseTensor:  # type: ignore[override]
        """x: feats [N, C_in] -> feats [N, C_out]."""
        return x.replace(super().forward(x.feats))
