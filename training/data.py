"""The training data set of the sparse-structure flow: a folder of one ``.npz`` file per asset.

Each ``<asset>.npz`` (numpy's own format, read with ``allow_pickle=False``) holds:

- ``cond``: float32 ``[L, C]``, the condition tokens of the asset's normal image as the engine computes them
  (``pipelines/hi3dgen.py::encode_condition``: DINOv2 tokens, layer-normed; ``[1374, 1024]`` for the release).
  Every asset of a set has the same ``[L, C]``.
- ``ss_latent``: float32 ``[8, 16, 16, 16]``, the sparse-structure latent the structure decoder turns into
  the asset's 64^3 occupancy (the encoder's output; the flow learns to generate it).
- ``surface_points``: float32 ``[P, 3]`` with ``P >= 1``, points on the asset's surface in the normalised cube
  ``[-0.5, 0.5]^3``, axes in the order of the occupancy grid's axes (grid index ``i`` along an axis is the cell
  centred at ``(i + 0.5) / R - 0.5``). Needed only when the normal regulariser is on.
- ``surface_normals``: float32 ``[P, 3]``, the unit outward normals at those points.
- optional ``occupancy``: uint8 ``[64, 64, 64]`` (1 = occupied), for encoders and checks; the trainer ignores it.

Batches are drawn by position, not by a stateful iterator: sample ``j`` of optimizer step ``s`` is element
``(s * batch + j) mod N`` of the epoch's permutation (seeded by the run seed and the epoch). A resumed run, a
run on several processes and a run on one all see the same samples in the same order.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

MAX_ASSET_BYTES = 512 << 20
MAX_ASSETS = 10_000_000
MAX_POINTS = 1 << 22
LATENT_SHAPE = (8, 16, 16, 16)


@dataclass(frozen=True)
class Asset:
    """One loaded, checked asset."""

    cond: torch.Tensor  # [L, C] float32
    latent: torch.Tensor  # [8, 16, 16, 16] float32
    points: torch.Tensor | None  # [P, 3] float32
    normals: torch.Tensor | None  # [P, 3] float32


class DataError(ValueError):
    """A data set file or folder that cannot be used; the message names it and what is wrong."""


def list_assets(folder: Path) -> list[Path]:
    """The ``.npz`` files of ``folder`` (regular files only, sorted by name); ``DataError`` if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"data folder {folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix == ".npz" and p.is_file() and not p.is_symlink())
    if not files:
        raise DataError(f"data folder {folder} holds no .npz assets (see training/data.py for the format)")
    if len(files) > MAX_ASSETS:
        raise DataError(f"data folder {folder} holds {len(files)} assets, more than {MAX_ASSETS}")
    return files


def load_asset(path: Path, need_surface: bool) -> Asset:
    """Read and check one asset file; ``DataError`` names the file and the bad array."""
    path = Path(path)
    if path.stat().st_size > MAX_ASSET_BYTES:
        raise DataError(f"{path} is larger than {MAX_ASSET_BYTES} bytes")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in ("cond", "ss_latent", "surface_points", "surface_normals") if k in npz}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path} is not a readable .npz file: {exc}") from None
    cond = _float_array(path, arrays, "cond", None)
    if cond.ndim != 2 or min(cond.shape) < 1:
        raise DataError(f"{path}: cond has shape {list(cond.shape)}, expected [L, C]")
    latent = _float_array(path, arrays, "ss_latent", LATENT_SHAPE)
    points = normals = None
    if need_surface:
        points = _float_array(path, arrays, "surface_points", None)
        normals = _float_array(path, arrays, "surface_normals", None)
        check_surface(path, points, normals)
    return Asset(cond, latent, points, normals)


def _float_array(path: Path, arrays: dict[str, np.ndarray], key: str, shape: tuple[int, ...] | None) -> torch.Tensor:
    if key not in arrays:
        raise DataError(f"{path} has no '{key}' array (see training/data.py for the format)")
    array = arrays[key]
    if array.dtype.kind != "f":
        raise DataError(f"{path}: '{key}' is {array.dtype}, expected float32")
    if shape is not None and tuple(array.shape) != shape:
        raise DataError(f"{path}: '{key}' has shape {list(array.shape)}, expected {list(shape)}")
    if not np.isfinite(array).all():
        raise DataError(f"{path}: '{key}' holds NaN or infinite values")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def check_surface(path: Path, points: torch.Tensor, normals: torch.Tensor) -> None:
    if points.ndim != 2 or points.shape[1] != 3 or not 1 <= len(points) <= MAX_POINTS:
        raise DataError(f"{path}: surface_points has shape {list(points.shape)}, expected [P, 3], P <= {MAX_POINTS}")
    if normals.shape != points.shape:
        raise DataError(f"{path}: surface_normals {list(normals.shape)} differs from surface_points")
    if points.abs().max() > 0.5 + 1e-4:
        raise DataError(f"{path}: surface_points leave the cube [-0.5, 0.5]^3")
    if ((normals.norm(dim=1) - 1.0).abs() > 1e-2).any():
        raise DataError(f"{path}: surface_normals are not unit vectors")


class AssetFolder:
    """The assets of a data folder, checked for a common condition shape; items load on demand."""

    def __init__(self, folder: Path, need_surface: bool) -> None:
        self.files = list_assets(folder)
        self.need_surface = need_surface
        first = load_asset(self.files[0], need_surface)
        self.cond_shape = tuple(first.cond.shape)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Asset:
        asset = load_asset(self.files[index], self.need_surface)
        if tuple(asset.cond.shape) != self.cond_shape:
            raise DataError(f"{self.files[index]}: cond has shape {list(asset.cond.shape)}, the first asset "
                            f"{list(self.cond_shape)}; all assets of a set need the same [L, C]")
        return asset


def sample_seed(seed: int, step: int, slot: int) -> int:
    """A 63-bit seed for sample ``slot`` of optimizer step ``step`` (counter-based, order-free)."""
    digest = hashlib.blake2b(f"{seed}:{step}:{slot}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class Schedule:
    """Which asset each sample position of the run reads (an epoch-seeded permutation, cached per epoch)."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed = size, seed
        self._perms: dict[int, torch.Tensor] = {}

    def asset_index(self, position: int) -> int:
        epoch, offset = divmod(position, self.size)
        if epoch not in self._perms:
            self._perms = {epoch: torch.randperm(self.size, generator=torch.Generator().manual_seed(
                sample_seed(self.seed, -1, epoch)))}
        return int(self._perms[epoch][offset])
