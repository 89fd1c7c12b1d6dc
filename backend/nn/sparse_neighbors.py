"""Neighbour lookup among active voxels and the submanifold kernel map built from it.

Two interchangeable lookups answer "which row sits at coords + offset?":
- a dense index grid over the (padded) bounding box of each sample, when that box is small enough
  (1.3 M voxels at 256^3 need a 258^3 int32 grid, about 69 MB);
- otherwise binary search (``torch.searchsorted``) in the sorted packed keys.
Both are plain tensor ops, so they run on cpu, cuda and mps alike.

The kernel map of a k^3 submanifold convolution lists, for every kernel offset, the (output row,
input row) pairs whose input voxel exists. Offset d and -d are mirror images (swap the pairs), so only
half of the offsets are looked up.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .sparse_tensor import SparseTensor, check_coords, offset_key, pack_coords

DENSE_GRID_LIMIT = 1 << 26
"Largest index grid (entries, int32) the dense lookup may allocate; above it binary search is used."


class DenseGridLookup:
    """Row index of the voxel at ``coords + offset`` through an int32 grid over the padded bounding box."""

    def __init__(self, coords: torch.Tensor, pad: int, lo: list[int], hi: list[int]) -> None:
        c = coords.long()  # [N, 4]
        self.dims = [hi[0] + 1] + [hi[a] - lo[a] + 1 + 2 * pad for a in (1, 2, 3)]  # [B, X, Y, Z]
        shift = torch.tensor([0, pad - lo[1], pad - lo[2], pad - lo[3]], device=c.device)
        g = c + shift  # [N, 4] grid position
        _, dx, dy, dz = self.dims
        self.flat = ((g[:, 0] * dx + g[:, 1]) * dy + g[:, 2]) * dz + g[:, 3]  # [N]
        self.grid = torch.full((self.dims[0] * dx * dy * dz,), -1, dtype=torch.int32, device=c.device)
        self.grid[self.flat] = torch.arange(c.shape[0], dtype=torch.int32, device=c.device)

    @staticmethod
    def volume(pad: int, lo: list[int], hi: list[int]) -> int:
        """Grid entries needed for coordinate bounds ``lo``/``hi`` ([b, x, y, z]) and padding ``pad``."""
        vol = hi[0] + 1
        for a in (1, 2, 3):
            vol *= hi[a] - lo[a] + 1 + 2 * pad
        return vol

    def __call__(self, offset: tuple[int, int, int]) -> torch.Tensor:
        """[N] int64 row of each voxel's neighbour at ``offset`` (-1 where absent)."""
        _, _, dy, dz = self.dims
        delta = (offset[0] * dy + offset[1]) * dz + offset[2]
        return self.grid[self.flat + delta].long()  # [N]


class SortedKeyLookup:
    """Row index of the voxel at ``coords + offset`` by binary search in the sorted packed keys."""

    def __init__(self, coords: torch.Tensor) -> None:
        self.keys = pack_coords(coords)  # [N]
        self.sorted_keys, self.order = torch.sort(self.keys)  # [N], [N]

    def __call__(self, offset: tuple[int, int, int]) -> torch.Tensor:
        """[N] int64 row of each voxel's neighbour at ``offset`` (-1 where absent)."""
        query = self.keys + offset_key(*offset)  # [N]
        pos = torch.searchsorted(self.sorted_keys, query).clamp_(max=self.keys.numel() - 1)  # [N]
        hit = self.sorted_keys[pos] == query  # [N]
        return torch.where(hit, self.order[pos], torch.full_like(pos, -1))  # [N]


def make_lookup(coords: torch.Tensor, reach: int) -> DenseGridLookup | SortedKeyLookup:
    """The cheaper lookup for offsets up to ``reach`` voxels per axis (dense grid when it fits)."""
    check_coords(coords, margin=reach)
    lo = coords.amin(dim=0).tolist()
    hi = coords.amax(dim=0).tolist()
    if DenseGridLookup.volume(reach, lo, hi) <= DENSE_GRID_LIMIT:
        return DenseGridLookup(coords, reach, lo, hi)
    return SortedKeyLookup(coords)


def kernel_offsets(kernel_size: int, dilation: int = 1) -> list[tuple[int, int, int]]:
    """Spatial offsets of a k^3 kernel in weight order (index (i, j, l) -> ((i-r)d, (j-r)d, (l-r)d))."""
    r = kernel_size // 2
    steps = [(i - r) * dilation for i in range(kernel_size)]
    return [(a, b, c) for a in steps for b in steps for c in steps]


@dataclass(frozen=True)
class KernelMap:
    """Submanifold kernel map: ``pairs[k]`` = (output rows, input rows) for kernel offset k.

    The centre offset is the identity and is stored as None. Rows are int64 index tensors [M_k].
    """

    kernel_size: int
    dilation: int
    pairs: list[tuple[torch.Tensor, torch.Tensor] | None]

    @property
    def num_pairs(self) -> int:
        """Total (output, input) pairs, the centre counted once per voxel is excluded."""
        return sum(int(p[0].numel()) for p in self.pairs if p is not None)


def build_kernel_map(coords: torch.Tensor, kernel_size: int, dilation: int = 1) -> KernelMap:
    """Kernel map of a submanifold k^3 convolution on ``coords`` [N, 4] (rows assumed unique)."""
    if kernel_size % 2 != 1:
        raise ValueError(f"submanifold convolution needs an odd kernel size, got {kernel_size}")
    offsets = kernel_offsets(kernel_size, dilation)
    count = len(offsets)
    centre = count // 2
    pairs: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * count
    if count == 1 or coords.shape[0] == 0:
        empty = torch.zeros(0, dtype=torch.long, device=coords.device)
        none = [None if k == centre else (empty, empty) for k in range(count)]
        return KernelMap(kernel_size, dilation, none)
    lookup = make_lookup(coords, (kernel_size // 2) * dilation)
    for k in range(centre):
        neighbour = lookup(offsets[k])  # [N]
        out_rows = torch.nonzero(neighbour >= 0).squeeze(1)  # [M]
        in_rows = neighbour[out_rows]  # [M]
        pairs[k] = (out_rows, in_rows)
        pairs[count - 1 - k] = (in_rows, out_rows)  # the mirrored offset -d
    return KernelMap(kernel_size, dilation, pairs)


def kernel_map(x: SparseTensor, kernel_size: int, dilation: int = 1) -> KernelMap:
    """The kernel map of ``x``'s coordinates, computed once and cached on the tensor."""
    key = ("kernel_map", kernel_size, dilation)
    if key not in x._cache:
        x._cache[key] = build_kernel_map(x.coords, kernel_size, dilation)
    return x._cache[key]
