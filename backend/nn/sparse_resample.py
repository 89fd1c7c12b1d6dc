"""Changing the resolution of a SparseTensor: average-pool down, nearest up, and subdivision.

- ``sparse_downsample``: voxels sharing ``coords // factor`` are pooled; the coarse rows are the unique
  parent coordinates sorted by (b, x, y, z), as the release's ``SparseDownsample``. The coarse tensor
  remembers the fine coordinates and the parent of each fine row, so ``sparse_upsample`` goes back exactly.
  Release quirk (kept by default): its ``torch.scatter_reduce(zeros, ..., reduce="mean")`` leaves
  ``include_self=True``, so the zero it starts from joins the average: ``sum / (count + 1)``.
- ``sparse_upsample``: each fine voxel takes its parent's features, rows in the fine tensor's order.
- ``sparse_subdivide``: each voxel becomes its 8 children ``2 c + {0, 1}^3`` (parent-major, children in
  ``torch.nonzero(torch.ones(2, 2, 2))`` order, z fastest) with the parent's features.
"""

from __future__ import annotations

import torch

from .sparse_tensor import SparseTensor, check_coords, pack_coords, unpack_keys

_UP = "upsample_map"


def parent_coords(coords: torch.Tensor, factor: int) -> torch.Tensor:
    """Coordinates of the coarse cell holding each voxel: [N, 4] -> [N, 4] (batch kept, xyz floor-divided)."""
    xyz = torch.div(coords[:, 1:], factor, rounding_mode="floor")  # [N, 3]
    return torch.cat([coords[:, :1], xyz], dim=1)  # [N, 4]


def sparse_downsample(x: SparseTensor, factor: int = 2, zero_in_mean: bool = True) -> SparseTensor:
    """Average-pool voxels sharing ``coords // factor``: feats [N, C] -> [M, C] at unique sorted parents.

    ``zero_in_mean`` reproduces the release (``sum / (count + 1)``, see the module doc); False gives the
    plain mean ``sum / count``. Sums are accumulated in float32 and returned in the input dtype.
    """
    check_coords(x.coords)
    keys = pack_coords(parent_coords(x.coords, factor))  # [N]
    unique_keys, parent, counts = torch.unique(keys, sorted=True, return_inverse=True, return_counts=True)
    sums = torch.zeros(unique_keys.shape[0], x.feats.shape[1], dtype=torch.float32, device=x.feats.device)
    sums.index_add_(0, parent, x.feats.float())  # [M, C]
    divisor = counts + 1 if zero_in_mean else counts  # [M]
    feats = (sums / divisor.unsqueeze(1).to(sums.dtype)).to(x.feats.dtype)  # [M, C]
    coarse_coords = unpack_keys(unique_keys).to(device=x.coords.device, dtype=x.coords.dtype)  # [M, 4]
    out = SparseTensor(coarse_coords, feats)
    out._cache["keys"] = unique_keys
    out._cache[_UP] = (x.coords, factor, parent)
    return out


def upsample_index(x: SparseTensor, fine_coords: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Row of ``x`` holding the parent of each fine voxel: [N_fine] int64 (ValueError if one is absent)."""
    cached = x._cache.get(_UP)
    if cached is not None and cached[0] is fine_coords and cached[1] == factor:
        return cached[2]
    if x.num_voxels == 0:
        if fine_coords.shape[0]:
            raise ValueError("sparse_upsample: the coarse tensor is empty but the fine one is not")
        return torch.zeros(0, dtype=torch.long, device=fine_coords.device)
    sorted_keys, order = torch.sort(x.keys())  # [M], [M]
    query = pack_coords(parent_coords(fine_coords, factor))  # [N]
    pos = torch.searchsorted(sorted_keys, query).clamp_(max=sorted_keys.numel() - 1)  # [N]
    if not bool((sorted_keys[pos] == query).all()):
        raise ValueError("sparse_upsample: some fine voxels have no parent in the coarse tensor")
    return order[pos]  # [N]


def sparse_upsample(x: SparseTensor, fine: SparseTensor | torch.Tensor, factor: int = 2) -> SparseTensor:
    """Nearest upsampling onto ``fine`` (a SparseTensor, or its coords [N, 4]): feats [M, C] -> [N, C].

    The result has the fine coordinates in the fine row order and, when ``fine`` is a SparseTensor, shares
    its cache (kernel maps computed at that resolution are reused).
    """
    fine_coords = fine.coords if isinstance(fine, SparseTensor) else fine
    index = upsample_index(x, fine_coords, factor)  # [N]
    feats = x.feats.index_select(0, index)  # [N, C]
    if isinstance(fine, SparseTensor):
        return fine.replace(feats)
    return SparseTensor(fine_coords, feats)


def child_offsets(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The 8 child offsets [8, 4] (batch column 0) in ``torch.nonzero(torch.ones(2, 2, 2))`` order."""
    xyz = torch.nonzero(torch.ones(2, 2, 2, device=device))  # [8, 3], z fastest
    return torch.cat([torch.zeros_like(xyz[:, :1]), xyz], dim=1).to(dtype)  # [8, 4]


def sparse_subdivide(x: SparseTensor) -> SparseTensor:
    """Each voxel -> 8 children at twice the resolution, features copied: feats [N, C] -> [8 N, C].

    Tensors sharing coordinates (e.g. ``x`` and ``x.replace(...)``) get children sharing one coordinate
    tensor and one cache, so kernel maps at the fine level are built once.
    """
    if "subdivide" not in x._cache:
        scale = torch.tensor([1, 2, 2, 2], dtype=x.coords.dtype, device=x.coords.device)
        offsets = child_offsets(x.coords.device, x.coords.dtype)  # [8, 4]
        children = (x.coords * scale).unsqueeze(1) + offsets  # [N, 8, 4]
        x._cache["subdivide"] = (children.flatten(0, 1), {})
    coords, cache = x._cache["subdivide"]
    feats = x.feats.unsqueeze(1).expand(-1, 8, -1).flatten(0, 1)  # [8 N, C]
    return SparseTensor(coords, feats, cache)
