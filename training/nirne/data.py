"""Reading a NiRNE data set: ``<data>/real/*.npz`` (stage 1) and ``<data>/synthetic/*.npz`` (stage 2).

Each ``.npz`` (numpy's format, read with ``allow_pickle=False``) holds ``image`` (float32 [H, W, 3] in [0, 1],
already composited over white, or uint8), ``normals`` (float32 [H, W, 3], unit, OpenGL camera frame: +X right,
+Y up, +Z toward the viewer) and ``mask`` (bool or uint8 [H, W], the object's pixels). Every sample of a split
has the same H x W. ``training/nirne/shapes.py`` writes such a set; a team's own renders or scans go the same way.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data import DataError

MAX_SAMPLE_BYTES = 256 << 20
MAX_SAMPLES = 1_000_000
MAX_SIDE = 4096


@dataclass(frozen=True)
class Sample:
    pixels: torch.Tensor  # [3, H, W] in [-1, 1], the network's input
    normals: torch.Tensor  # [3, H, W] unit
    mask: torch.Tensor  # [H, W] bool


def list_samples(folder: Path) -> list[Path]:
    """The ``.npz`` regular files of ``folder`` (sorted); ``DataError`` if there is none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder; expected one .npz file per sample")
    files = sorted(p for p in folder.iterdir() if p.suffix == ".npz" and p.is_file() and not p.is_symlink())
    if not files:
        raise DataError(f"{folder} holds no .npz sample")
    if len(files) > MAX_SAMPLES:
        raise DataError(f"{folder} holds more than {MAX_SAMPLES} samples")
    return files


def load_sample(path: Path) -> Sample:
    """One checked sample; ``DataError`` names the file and what is wrong."""
    if path.stat().st_size > MAX_SAMPLE_BYTES:
        raise DataError(f"{path} is larger than {MAX_SAMPLE_BYTES} bytes")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            found = {k: np.asarray(arrays[k]) for k in ("image", "normals", "mask") if k in arrays.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path} is not a readable .npz file: {exc}") from None
    missing = [k for k in ("image", "normals", "mask") if k not in found]
    if missing:
        raise DataError(f"{path} lacks {', '.join(missing)}")
    image, normals, mask = found["image"], found["normals"], found["mask"]
    if image.ndim != 3 or image.shape[-1] != 3 or not 8 <= min(image.shape[:2]) <= max(image.shape[:2]) <= MAX_SIDE:
        raise DataError(f"{path}: image has shape {list(image.shape)}, expected [H, W, 3] with 8 <= H, W <= {MAX_SIDE}")
    if normals.shape != image.shape or mask.shape != image.shape[:2]:
        raise DataError(f"{path}: normals {list(normals.shape)} and mask {list(mask.shape)} must match the "
                        f"image [H, W, 3] / [H, W] = {list(image.shape)}")
    return Sample(_pixels(path, image), _normals(path, normals), torch.from_numpy(mask.astype(bool)))


def _pixels(path: Path, image: np.ndarray) -> torch.Tensor:
    if image.dtype == np.uint8:
        values = image.astype(np.float32) / 255.0
    elif image.dtype in (np.float32, np.float64, np.float16):
        values = image.astype(np.float32)
        if not np.isfinite(values).all() or values.min() < 0.0 or values.max() > 1.0:
            raise DataError(f"{path}: image values must be finite and in [0, 1]")
    else:
        raise DataError(f"{path}: image dtype {image.dtype} must be uint8 or float")
    return torch.from_numpy(values * 2.0 - 1.0).permute(2, 0, 1).contiguous()  # [3, H, W]


def _normals(path: Path, normals: np.ndarray) -> torch.Tensor:
    if normals.dtype not in (np.float32, np.float64, np.float16):
        raise DataError(f"{path}: normals dtype {normals.dtype} must be float")
    values = normals.astype(np.float32)
    lengths = np.linalg.norm(values, axis=-1)
    if not np.isfinite(values).all() or np.abs(lengths - 1.0).max() > 1e-2:
        raise DataError(f"{path}: normals must be finite unit vectors")
    return torch.from_numpy(values).permute(2, 0, 1).contiguous()  # [3, H, W]


class SampleFolder:
    """Every sample of one split, loaded once (the tiny sets fit in memory; the latents are cached later)."""

    def __init__(self, folder: Path, align: int = 1) -> None:
        self.files = list_samples(folder)
        self.samples = [load_sample(p) for p in self.files]
        shapes = {tuple(s.pixels.shape) for s in self.samples}
        if len(shapes) > 1:
            raise DataError(f"{folder}: samples of one split must share one size, found {sorted(shapes)}")
        _, height, width = self.samples[0].pixels.shape
        if height % align or width % align:
            raise DataError(f"{folder}: images are {height} x {width}; the networks need multiples of {align}")

    def __len__(self) -> int:
        return len(self.samples)

    def stacked(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pixels [N, 3, H, W], normals [N, 3, H, W], masks [N, H, W]."""
        return (torch.stack([s.pixels for s in self.samples]), torch.stack([s.normals for s in self.samples]),
                torch.stack([s.mask for s in self.samples]))
