"""Self-attention among sparse voxel tokens: per sample (full) or per cubic window (swin).

Both use ``F.scaled_dot_product_attention`` (scale 1/sqrt(D)) and return [N, H, D] in the input row order.

Windowed attention groups the voxels by window id ``(coord + shift) // window_size`` per axis (batch folded
into the id), so the result equals dense attention under a block-diagonal "same window" mask. Windows
are sorted by size and processed in padded buckets (a key-padding mask hides the padding), chunked so
that the attention scores of one call stay bounded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .sparse_tensor import SparseTensor, pack_coords

SCORE_BUDGET = 1 << 26
"Upper bound on windows x heads x L x L score entries of one attention call (memory of the math kernel)."


def _attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """q, k, v: [B, L, H, D]; mask: [B, 1, 1, L] bool (True = attend) -> [B, L, H, D]."""
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, H, L, D]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2)  # [B, L, H, D]


def batch_rows(batch_index: torch.Tensor) -> list[slice | torch.Tensor]:
    """Rows of each sample from a per-token batch index [N]: slices when grouped, else index tensors."""
    if batch_index.numel() == 0:
        return []
    size = int(batch_index.max()) + 1
    if batch_index.numel() == 1 or not bool((batch_index[1:] < batch_index[:-1]).any()):
        counts = torch.bincount(batch_index.long(), minlength=size).tolist()
        starts = [sum(counts[:b]) for b in range(size)]
        return [slice(s, s + n) for s, n in zip(starts, counts)]
    return [torch.nonzero(batch_index == b).squeeze(1) for b in range(size)]


def sparse_full_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    batch: torch.Tensor | list[slice | torch.Tensor] | SparseTensor | None = None,
) -> torch.Tensor:
    """Attention among the tokens of each sample. q, k, v: [N, H, D] -> [N, H, D].

    ``batch`` says which rows form a sample: None (all rows, one sample), a batch index [N], a list of
    row selections (slices or index tensors), or a SparseTensor (its ``sample_rows()``).
    """
    if batch is None:
        return _attend(q[None], k[None], v[None])[0]
    if isinstance(batch, SparseTensor):
        groups = batch.sample_rows()
    elif isinstance(batch, torch.Tensor):
        groups = batch_rows(batch)
    else:
        groups = batch
    if len(groups) == 1 and isinstance(groups[0], slice) and groups[0] == slice(0, q.shape[0]):
        return _attend(q[None], k[None], v[None])[0]
    out = torch.empty_like(q)
    for rows in groups:
        out[rows] = _attend(q[rows][None], k[rows][None], v[rows][None])[0]
    return out


@dataclass(frozen=True)
class WindowBucket:
    """Windows padded to a common length L.

    ``rows`` [W, L]: token rows to gather (padding reads row 0); ``dest`` [W, L]: rows to write the result
    to (padding writes a dump row N, so no boolean indexing or device sync is needed); ``valid`` [W, L]:
    the key-padding mask; ``full``: no window of the bucket needs padding (no mask at all).
    """

    rows: torch.Tensor
    dest: torch.Tensor
    valid: torch.Tensor
    full: bool


def bucket_lengths(max_len: int) -> list[int]:
    """Padded window lengths up to ``max_len``: multiples of 8, four per octave (8, 16, ..., 64, 80, ...)."""
    lengths = [8]
    while lengths[-1] < max_len:
        cur = lengths[-1]
        lengths.append(cur + max(8, (1 << (cur.bit_length() - 1)) // 4))
    return lengths


def window_partition(coords: torch.Tensor, window_size: int, shift: int = 0) -> list[WindowBucket]:
    """Group the rows of ``coords`` [N, 4] by window ``(xyz + shift) // window_size`` (per batch item)."""
    xyz = torch.div(coords[:, 1:] + shift, window_size, rounding_mode="floor")  # [N, 3]
    keys = pack_coords(torch.cat([coords[:, :1], xyz], dim=1))  # [N]
    sorted_keys, order = torch.sort(keys)  # [N]
    _, counts = torch.unique_consecutive(sorted_keys, return_counts=True)  # [W]
    starts = torch.cumsum(counts, 0) - counts  # [W]
    counts_sorted, by_size = torch.sort(counts)  # windows by size
    edges = torch.tensor(bucket_lengths(int(counts.max()) if counts.numel() else 8), device=coords.device)
    bucket_of = torch.searchsorted(edges, counts_sorted)  # [W] index of the padded length
    buckets, lo = [], 0
    for n in torch.unique_consecutive(bucket_of, return_counts=True)[1].tolist():
        win = by_size[lo : lo + n]  # [W_b] window ids
        length = -(-int(counts_sorted[lo + n - 1]) // 8) * 8  # longest window, rounded up to 8
        lo += n
        pos = torch.arange(length, device=coords.device)  # [L]
        valid = pos[None] < counts[win, None]  # [W_b, L]
        idx = (starts[win, None] + pos[None]).clamp_(max=coords.shape[0] - 1)  # [W_b, L] sorted positions
        rows = torch.where(valid, order[idx], torch.zeros_like(idx))  # [W_b, L]
        dest = torch.where(valid, rows, torch.full_like(idx, coords.shape[0]))  # [W_b, L]
        buckets.append(WindowBucket(rows, dest, valid, bool(valid.all())))
    return buckets


def cached_window_partition(x: SparseTensor, window_size: int, shift: int = 0) -> list[WindowBucket]:
    """``window_partition`` of ``x``'s coords, computed once and cached on the tensor."""
    key = ("window_partition", window_size, shift)
    if key not in x._cache:
        x._cache[key] = window_partition(x.coords, window_size, shift)
    return x._cache[key]


def sparse_window_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    coords: torch.Tensor | SparseTensor,
    window_size: int,
    shift: int = 0,
) -> torch.Tensor:
    """Attention among the voxels of each window. q, k, v: [N, H, D] -> [N, H, D] in input row order.

    ``coords`` is [N, 4] (b, x, y, z), or the SparseTensor itself so that the window grouping is cached
    on it and shared by every block with the same ``(window_size, shift)``.
    """
    if isinstance(coords, SparseTensor):
        buckets = cached_window_partition(coords, window_size, shift)
    else:
        buckets = window_partition(coords, window_size, shift)
    n, heads = q.shape[0], q.shape[1]
    out = q.new_empty(n + 1, *q.shape[1:])  # [N + 1, H, D], the last row takes the padding
    for bucket in buckets:
        length = bucket.rows.shape[1]
        step = max(1, SCORE_BUDGET // (heads * length * length))
        parts = zip(bucket.rows.split(step), bucket.dest.split(step), bucket.valid.split(step), strict=True)
        for rows, dest, valid in parts:
            mask = None if bucket.full else valid[:, None, None, :]  # [W, 1, 1, L]
            out[dest] = _attend(q[rows], k[rows], v[rows], mask)  # [W, L, H, D]
    return out[:n]
