"""Sparse voxel tensor: integer coordinates [N, 4] (batch, x, y, z) with per-voxel features [N, C].

Rows need not be sorted. Everything derived from the coordinates alone (neighbour maps of the
convolutions, window groupings, the way back from a downsampling) is kept in a private cache dict that
``replace`` shares with the new tensor, so consecutive layers on the same voxels compute it once.

Coordinates are packed into int64 keys (18 bits per spatial axis, offset so that small negative
values work, batch in the high bits): key order equals lexicographic (b, x, y, z) order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

AXIS_BITS = 18
"Bits per spatial axis in a packed coordinate key."
AXIS_OFFSET = 1 << (AXIS_BITS - 1)
"Added to each spatial coordinate before packing, so coordinates in [-2^17, 2^17) are representable."
MAX_BATCH = 1 << (63 - 3 * AXIS_BITS)
"Batch indices must be below this (512) for keys to fit in int64."


def pack_coords(coords: torch.Tensor) -> torch.Tensor:
    """Packed int64 keys of coordinates [N, 4] (b, x, y, z) -> [N]; key order = lexicographic order."""
    c = coords.long()  # [N, 4]
    key = c[:, 0]
    for axis in (1, 2, 3):
        key = (key << AXIS_BITS) | (c[:, axis] + AXIS_OFFSET)
    return key  # [N]


def unpack_keys(keys: torch.Tensor) -> torch.Tensor:
    """Inverse of ``pack_coords``: keys [N] int64 -> coordinates [N, 4] int32."""
    mask = (1 << AXIS_BITS) - 1
    cols = []
    for shift in (2 * AXIS_BITS, AXIS_BITS, 0):
        cols.append(((keys >> shift) & mask) - AXIS_OFFSET)
    batch = keys >> (3 * AXIS_BITS)
    return torch.stack([batch, *cols], dim=1).int()  # [N, 4]


def offset_key(dx: int, dy: int, dz: int) -> int:
    """Key difference of a spatial offset: ``pack(c + d) == pack(c) + offset_key(d)`` inside the range."""
    return (dx << (2 * AXIS_BITS)) + (dy << AXIS_BITS) + dz


def check_coords(coords: torch.Tensor, margin: int = 0) -> None:
    """Raise ValueError unless ``coords`` is [N, 4] integer and packable with ``margin`` to spare."""
    if coords.dim() != 2 or coords.shape[1] != 4 or coords.dtype.is_floating_point:
        raise ValueError(f"coords must be an integer tensor [N, 4], got {tuple(coords.shape)} {coords.dtype}")
    if coords.shape[0] == 0:
        return
    lo = coords.amin(dim=0).tolist()
    hi = coords.amax(dim=0).tolist()
    if lo[0] < 0 or hi[0] >= MAX_BATCH:
        raise ValueError(f"batch indices must lie in [0, {MAX_BATCH}), got [{lo[0]}, {hi[0]}]")
    if min(lo[1:]) - margin < -AXIS_OFFSET or max(hi[1:]) + margin >= AXIS_OFFSET:
        raise ValueError(f"spatial coordinates must lie in [{-AXIS_OFFSET}, {AXIS_OFFSET}) (margin {margin})")


@dataclass(eq=False)
class SparseTensor:
    """Active voxels of a batch of grids.

    ``coords``: [N, 4] int32 (batch, x, y, z), any row order; columns 1..3 are the dense D, H, W axes.
    ``feats``: [N, C] features of the same rows.
    """

    coords: torch.Tensor
    feats: torch.Tensor
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.coords.dim() != 2 or self.coords.shape[1] != 4:
            raise ValueError(f"coords must be [N, 4], got {tuple(self.coords.shape)}")
        if self.feats.shape[0] != self.coords.shape[0]:
            raise ValueError(f"feats rows {self.feats.shape[0]} != coords rows {self.coords.shape[0]}")

    def replace(self, feats: torch.Tensor) -> SparseTensor:
        """Same coordinates (and shared coordinate cache), new features [N, C']."""
        return SparseTensor(self.coords, feats, self._cache)

    @property
    def num_voxels(self) -> int:
        """Number of active voxels N."""
        return int(self.coords.shape[0])

    @property
    def device(self) -> torch.device:
        return self.feats.device

    @property
    def dtype(self) -> torch.dtype:
        return self.feats.dtype

    @property
    def batch_size(self) -> int:
        """Number of samples: 1 + the largest batch index (0 when empty); computed once per coords."""
        if "batch_size" not in self._cache:
            n = int(self.coords[:, 0].max()) + 1 if self.num_voxels else 0
            self._cache["batch_size"] = n
        return self._cache["batch_size"]

    def batch_slices(self) -> list[slice] | None:
        """Row slice of each sample when rows are grouped by non-decreasing batch index, else None."""
        if "batch_slices" not in self._cache:
            self._cache["batch_slices"] = _grouped_slices(self.coords[:, 0], self.batch_size)
        return self._cache["batch_slices"]

    def sample_rows(self) -> list[slice | torch.Tensor]:
        """Rows of each sample: slices when grouped, else int64 index tensors."""
        slices = self.batch_slices()
        if slices is not None:
            return list(slices)
        if "sample_rows" not in self._cache:
            batch = self.coords[:, 0]
            self._cache["sample_rows"] = [
                torch.nonzero(batch == b).squeeze(1) for b in range(self.batch_size)
            ]
        return self._cache["sample_rows"]

    def keys(self) -> torch.Tensor:
        """Packed int64 coordinate keys [N] (cached)."""
        if "keys" not in self._cache:
            check_coords(self.coords, margin=0)
            self._cache["keys"] = pack_coords(self.coords)
        return self._cache["keys"]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> SparseTensor:
        """Move to ``device`` and/or cast feats to ``dtype`` (the cache is dropped on a move)."""
        dtype = dtype or self.feats.dtype
        if device is None or torch.device(device) == self.coords.device:
            return self.replace(self.feats.to(dtype))
        return SparseTensor(self.coords.to(device), self.feats.to(device=device, dtype=dtype))


def _grouped_slices(batch: torch.Tensor, batch_size: int) -> list[slice] | None:
    """Slices per sample if ``batch`` [N] is non-decreasing, else None."""
    if batch.numel() == 0:
        return []
    if batch.numel() > 1 and bool((batch[1:] < batch[:-1]).any()):
        return None
    counts = torch.bincount(batch.long(), minlength=batch_size).tolist()
    slices, start = [], 0
    for n in counts:
        slices.append(slice(start, start + n))
        start += n
    return slices


def sparse_cat(a: SparseTensor, b: SparseTensor) -> SparseTensor:
    """Channel concatenation of two tensors on the same voxels: feats [N, Ca] + [N, Cb] -> [N, Ca + Cb]."""
    if a.coords is not b.coords and not torch.equal(a.coords, b.coords):
        raise ValueError("sparse_cat needs both tensors on the same coordinates (same rows, same order)")
    return a.replace(torch.cat([a.feats, b.feats], dim=1))
