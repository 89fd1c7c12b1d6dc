"""Normals of an inflated silhouette: the shape a balloon of the outline would take."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..normalmap import normalize


def inflated_height(mask: np.ndarray) -> np.ndarray:
    """Height [H, W] in pixels: a circular profile over the distance to the outline.

    With ``d`` the distance to the background and ``R`` its maximum, ``h = sqrt(d (2R - d))``: a disc
    becomes a hemisphere, a long shape a rounded tube.
    """
    d = ndimage.distance_transform_edt(mask).astype(np.float32)  # [H, W]
    r = max(float(d.max()), 1.0)
    d = np.minimum(d, r)
    return np.sqrt(np.maximum(d * (2.0 * r - d), 0.0))


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
