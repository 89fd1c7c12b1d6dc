"""Foreground masks: the alpha channel when there is one, else a plain-background estimate."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def foreground_mask(rgba: np.ndarray, has_alpha: bool) -> np.ndarray:
    """Boolean [H, W] foreground of an RGBA float image."""
    if has_alpha:
        return clean_mask(rgba[..., 3] > 0.5)
    return estimate_mask(rgba[..., :3])


def estimate_mask(rgb: np.ndarray) -> np.ndarray:
    """Foreground of a photo on a plain background.

    The background colour is the median of the border pixels; pixels close to it (relative to the border's
    own spread) that connect to the border are background, so background-coloured parts enclosed by the
    object stay foreground. If the border is not plain (no usable background), the whole image is kept.
    """
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])  # [P, 3]
    bg = np.median(border, axis=0)
    spread = np.percentile(np.linalg.norm(border - bg, axis=1), 90)
    if spread > 0.25:
        return np.ones(rgb.shape[:2], bool)
    threshold = max(0.08, 2.5 * spread)
    similar = np.linalg.norm(rgb - bg, axis=-1) < threshold  # [H, W]
    labels, _ = ndimage.label(similar)
    edge_labels = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    background = np.isin(labels, edge_labels[edge_labels > 0])
    return clean_mask(~background)


def clean_mask(mask: np.ndarray, min_fraction: float = 0.02) -> np.ndarray:
    """Remove specks: drop components smaller than ``min_fraction`` of the largest one."""
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask.copy()
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
    keep = np.flatnonzero(sizes >= min_fraction * sizes.max()) + 1
    return np.isin(labels, keep)
