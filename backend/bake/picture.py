"""Reading the input picture (colours or the predicted normals) at sub-pixel positions, without the
background leaking in at the object's outline."""

from __future__ import annotations

import numpy as np


def spread_foreground(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``image`` [H, W, C] with every background pixel replaced by the nearest foreground pixel (``mask``
    [H, W]): bilinear reads just inside the outline then blend object values only."""
    from scipy import ndimage

    inside = np.asarray(mask, bool)
    if inside.all() or not inside.any():
        return image
    _, (rows, cols) = ndimage.distance_transform_edt(~inside, return_indices=True)
    return image[rows, cols]


def sample(image: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Bilinear values [K, C] of ``image`` [H, W, C] at pixel positions [K, 2] (u, v; centres at +0.5),
    clamped at the border."""
    from scipy import ndimage

    coords = np.stack([pixels[:, 1] - 0.5, pixels[:, 0] - 0.5])  # [2, K] (row, col)
    planes = [ndimage.map_coordinates(np.asarray(image[..., c], np.float32), coords, order=1, mode="nearest")
              for c in range(image.shape[-1])]
    return np.stack(planes, axis=1)
