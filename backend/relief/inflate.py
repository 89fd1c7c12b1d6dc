"""Normals of an inflated silhouette: the shape a balloon of the outline would take.

The height solves a Poisson problem on the mask, ``-lap(u) = 1`` with ``u = 0`` outside, and
``h = 2 sqrt(u)``: exactly a hemisphere for a disc, a smooth rounded shape for any outline (no creases
along the medial axis, unlike profiles of the distance transform).
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import sparse
from scipy.sparse.linalg import spsolve

from ..normalmap import normalize

SOLVE_SIDE = 256  # the Poisson solve runs at most at this size; the smooth result is upsampled
STAIR_SIGMA = 1.0
"""Blur (pixels of the solve) of ``u`` before the square root. ``u`` is zero on the mask's pixel staircase,
and near the outline, where ``sqrt`` is steep, each stair step became a rib across the rim."""


def inflated_height(mask: np.ndarray) -> np.ndarray:
    """Height [H, W] in pixels of the inflated ``mask`` (0 outside)."""
    h, w = mask.shape
    scale = min(1.0, SOLVE_SIDE / max(h, w))
    if scale < 1.0:
        small = _resize(mask.astype(np.float32), (max(2, round(h * scale)), max(2, round(w * scale)))) > 0.5
        u = _smoothed(_poisson_bump(small)) / scale**2  # u scales with length squared
        return np.where(mask, 2.0 * np.sqrt(np.maximum(_resize(u, (h, w)), 0.0)), 0.0).astype(np.float32)
    return np.where(mask, 2.0 * np.sqrt(_smoothed(_poisson_bump(mask))), 0.0).astype(np.float32)


def _smoothed(u: np.ndarray) -> np.ndarray:
    """``u`` blurred by ``STAIR_SIGMA`` pixels of the solve."""
    from scipy import ndimage

    return np.maximum(ndimage.gaussian_filter(u, STAIR_SIGMA), 0.0)


def _poisson_bump(mask: np.ndarray) -> np.ndarray:
    """Solve -lap(u) = 1 on the mask pixels with u = 0 on every pixel outside (5-point stencil)."""
    inside = np.pad(mask, 1)
    index = np.full(inside.shape, -1, np.int64)
    n = int(inside.sum())
    index[inside] = np.arange(n)
    rows, cols = np.nonzero(inside)
    diag = sparse.eye(n, format="csr") * 4.0
    off = []
    for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        nb = index[rows + dr, cols + dc]
        ok = nb >= 0
        off.append(sparse.csr_matrix((-np.ones(ok.sum()), (np.flatnonzero(ok), nb[ok])), shape=(n, n)))
    u = spsolve((diag + sum(off)).tocsc(), np.ones(n))
    out = np.zeros(inside.shape)
    out[inside] = u
    return np.maximum(out[1:-1, 1:-1], 0.0)


def _resize(arr: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    img = Image.fromarray(arr.astype(np.float32), mode="F")
    return np.asarray(img.resize((shape[1], shape[0]), Image.Resampling.BILINEAR))


def height_to_normals(height: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Unit normals [H, W, 3] (+X right, +Y up, +Z to viewer) of a height field in pixel units."""
    dz_dy, dz_dx = np.gradient(height.astype(np.float32))  # rows go down the image
    n = np.stack([-dz_dx, dz_dy, np.ones_like(height)], axis=-1)
    n = normalize(n)
    n[~mask] = (0.0, 0.0, 1.0)
    return n


def inflated_normals(mask: np.ndarray) -> np.ndarray:
    """Normals of the inflated silhouette of ``mask``."""
    return height_to_normals(inflated_height(mask), mask)
