"""The training data set of the structured-latent flow: a folder of one ``.npz`` file per asset.

Each ``<asset>.npz`` (read with ``allow_pickle=False``) holds:

- ``cond``: float32 ``[L, C]``, the condition tokens of the asset's normal image (as in ``training/data.py``).
- ``slat_coords``: integer ``[N, 3]``, ``N >= 1`` distinct voxels of the 64^3 grid (values 0..63), the
  asset's occupied (surface) voxels: what the structure stage gives the latent stage.
- ``slat_feats``: float32 ``[N, 8]``, the structured latent on those voxels, *normalised* (the engine
  de-normalises the flow's output with ``pipeline.json``'s ``slat_normalization`` before the mesh decoder).
- ``surface_points`` / ``surface_normals``: float32 ``[P, 3]`` in the cube ``[-0.5, 0.5]^3`` (the mesh
  decoder's frame: voxel ``i`` spans ``[i / 64 - 0.5, (i + 1) / 64 - 0.5]``) and unit outward normals; needed
  only when the normal regulariser is on.

Samples are drawn by position exactly as the structure trainer does (``data.Schedule``), so resume and
several processes see the same samples in the same order.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .data import MAX_ASSET_BYTES, DataError, check_surface, list_assets

GRID = 64
"Edge of the voxel grid the structured latent lives on."
MAX_VOXELS = GRID**3
LATENT_CHANNELS = 8


@dataclass(frozen=True)
class SLatAsset:
    """One loaded, checked asset."""

    cond: torch.Tensor  # [L, C] float32
    coords: torch.Tensor  # [N, 3] int32 in 0..63
    feats: torch.Tensor  # [N, 8] float32 (normalised)
    points: torch.Tensor | None  # [P, 3] float32
    normals: torch.Tensor | None  # [P, 3] float32


def _array(path: Path, arrays: dict[str, np.ndarray], key: str) -> np.ndarray:
    if key not in arrays:
        raise DataError(f"{path} has no '{key}' array (see training/slat_data.py for the format)")
    return arrays[key]


def _floats(path: Path, arrays: dict[str, np.ndarray], key: str) -> torch.Tensor:
    array = _array(path, arrays, key)
    if array.dtype.kind != "f":
        raise DataError(f"{path}: '{key}' is {array.dtype}, expected float32")
    if not np.isfinite(array).all():
        raise DataError(f"{path}: '{key}' holds NaN or infinite values")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _coords(path: Path, arrays: dict[str, np.ndarray]) -> torch.Tensor:
    array = _array(path, arrays, "slat_coords")
    if array.dtype.kind not in "iu" or array.ndim != 2 or array.shape[1] != 3:
        raise DataError(f"{path}: slat_coords is {array.dtype} {list(array.shape)}, expected integers [N, 3]")
    if not 1 <= len(array) <= MAX_VOXELS:
        raise DataError(f"{path}: slat_coords has {len(array)} voxels, expected 1..{MAX_VOXELS}")
    if array.min() < 0 or array.max() >= GRID:
        raise DataError(f"{path}: slat_coords leave the 64^3 grid (values must be 0..63)")
    coords = torch.from_numpy(np.ascontiguousarray(array, dtype=np.int32))
    keys = (coords[:, 0].long() * GRID + coords[:, 1]) * GRID + coords[:, 2]
    if len(torch.unique(keys)) != len(keys):
        raise DataError(f"{path}: slat_coords lists a voxel twice")
    return coords


def load_slat_asset(path: Path, need_surface: bool) -> SLatAsset:
    """Read and check one asset file; ``DataError`` names the file and the bad array."""
    path = Path(path)
    if path.stat().st_size > MAX_ASSET_BYTES:
        raise DataError(f"{path} is larger than {MAX_ASSET_BYTES} bytes")
    keys = ("cond", "slat_coords", "slat_feats", "surface_points", "surface_normals")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in keys if k in npz}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path} is not a readable .npz file: {exc}") from None
    cond = _floats(path, arrays, "cond")
    if cond.ndim != 2 or min(cond.shape) < 1:
        raise DataError(f"{path}: cond has shape {list(cond.shape)}, expected [L, C]")
    coords = _coords(path, arrays)
    feats = _floats(path, arrays, "slat_feats")
    if tuple(feats.shape) != (len(coords), LATENT_CHANNELS):
        raise DataError(f"{path}: slat_feats has shape {list(feats.shape)}, expected [{len(coords)}, 8]")
    points = normals = None
    if need_surface:
        points, normals = _floats(path, arrays, "surface_points"), _floats(path, arrays, "surface_normals")
        check_surface(path, points, normals)
    return SLatAsset(cond, coords, feats, points, normals)


class SLatAssetFolder:
    """The assets of a data folder with a common condition shape; items load on demand."""

    def __init__(self, folder: Path, need_surface: bool) -> None:
        self.files = list_assets(folder)
        self.need_surface = need_surface
        self.cond_shape = tuple(load_slat_asset(self.files[0], need_surface).cond.shape)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> SLatAsset:
        asset = load_slat_asset(self.files[index], self.need_surface)
        if tuple(asset.cond.shape) != self.cond_shape:
            raise DataError(f"{self.files[index]}: cond has shape {list(asset.cond.shape)}, the first asset "
                            f"{list(self.cond_shape)}; all assets of a set need the same [L, C]")
        return asset
