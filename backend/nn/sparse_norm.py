"""Normalisation of SparseTensor features, computed in float32 and cast back (release ``*Norm32``).

- ``SparseLayerNorm32``: per-voxel LayerNorm over channels.
- ``SparseGroupNorm32``: GroupNorm whose statistics are taken, for each sample of the batch, over all of
  its voxels and the channels of a group (a sample's voxels seen as a [1, C, N] sequence).
"""

from __future__ import annotations

import torch
from torch import nn

from .norms import upcast
from .sparse_tensor import SparseTensor

ROW_CHUNK = 1 << 18
"Rows converted to float32 at a time by the group norm (bounds the temporary float32 copies)."


class SparseLayerNorm32(nn.LayerNorm):
    """LayerNorm of each voxel's features in float32; accepts a SparseTensor or a plain [N, C] tensor."""

    def forward(self, x: SparseTensor | torch.Tensor) -> SparseTensor | torch.Tensor:  # type: ignore[override]
        feats = x.feats if isinstance(x, SparseTensor) else x
        out = super().forward(feats.float()).to(feats.dtype)  # [N, C]
        return x.replace(out) if isinstance(x, SparseTensor) else out


def _row_chunks(rows: slice | torch.Tensor, chunk: int) -> list[slice | torch.Tensor]:
    """Split a row selection (slice or index tensor) into pieces of at most ``chunk`` rows."""
    if isinstance(rows, torch.Tensor):
        return list(rows.split(chunk))
    return [slice(s, min(s + chunk, rows.stop)) for s in range(rows.start, rows.stop, chunk)]


def group_norm_rows(
    feats: torch.Tensor,
    rows: slice | torch.Tensor,
    out: torch.Tensor,
    num_groups: int,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float,
) -> None:
    """Group-normalise ``feats[rows]`` (one sample) into ``out[rows]``; statistics in float32 (float64 stays
    float64, so a float64 gradcheck through the mesh decoder is exact), two passes."""
    chunks = _row_chunks(rows, ROW_CHUNK)
    channels = feats.shape[1]
    num_rows = rows.numel() if isinstance(rows, torch.Tensor) else rows.stop - rows.start
    count = num_rows * (channels // num_groups)
    if count == 0:
        return
    total = torch.stack([upcast(feats[r]).sum(0) for r in chunks]).sum(0)  # [C]
    mean = total.view(num_groups, -1).sum(1) / count  # [G]
    mean_c = mean.repeat_interleave(channels // num_groups)  # [C]
    sq = torch.stack([(upcast(feats[r]) - mean_c).square().sum(0) for r in chunks]).sum(0)  # [C]
    var = sq.view(num_groups, -1).sum(1) / count  # [G]
    scale = torch.rsqrt(var + eps).repeat_interleave(channels // num_groups)  # [C]
    if weight is not None:
        scale = scale * upcast(weight)
    shift = -mean_c * scale  # [C]
    if bias is not None:
        shift = shift + upcast(bias)
    for r in chunks:
        out[r] = torch.addcmul(shift, upcast(feats[r]), scale).to(out.dtype)  # [n, C]


class SparseGroupNorm32(nn.GroupNorm):
    """GroupNorm over each sample's voxels in float32. Keys: ``weight`` [C], ``bias`` [C] (when affine)."""

    def forward(self, x: SparseTensor) -> SparseTensor:  # type: ignore[override]
        """x: feats [N, C] -> normalised feats [N, C] in the input dtype."""
        feats = x.feats
        out = torch.empty_like(feats)  # [N, C]
        for rows in x.sample_rows():
            group_norm_rows(feats, rows, out, self.num_groups, self.weight, self.bias, self.eps)
        return x.replace(out)
