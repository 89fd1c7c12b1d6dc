"""Shape from shading without the picture's texture: an edge-aware smoothing of the luminance.

Fur, print, speckle and JPEG noise are small luminance features; the shading that carries shape (an eye
socket, a fold, a rounded cheek) is wider. Two classic edge-preserving filters separate them: a median over
a window 1.2 % of the object wide (at least 5 pixels) removes every feature narrower than half the window,
whatever its contrast, and keeps step edges where they are; the guided filter (He, Sun & Tang, "Guided Image
Filtering", PAMI 2013), guided by the result itself, then flattens what low-contrast texture is left and
keeps the edges whose contrast is above ``SMOOTH_EPS``. Both run in about linear time at any window, so
they work at the image's full size.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SMOOTH_RADIUS = 0.006
"Window radius of both filters as a fraction of the object's size (the square root of its area in pixels)."
MIN_RADIUS = 2
SMOOTH_EPS = 0.08**2
"Luminance variance (on a 0..1 scale) below which a guided-filter window counts as texture and is flattened."


def shape_luminance(lum: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The luminance [H, W] in [0, 1] with the texture inside ``mask`` smoothed away, shading edges kept.

    The background is replaced by the object's mean first, so the outline does not count as an edge.
    """
    import cv2

    size = float(np.sqrt(max(mask.sum(), 1)))
    radius = max(MIN_RADIUS, round(SMOOTH_RADIUS * size))
    plane = np.where(mask, lum, lum[mask].mean() if mask.any() else 0.0)
    levels = np.clip(plane * 255.0 + 0.5, 0, 255).astype(np.uint8)  # any window size needs 8 bits
    median = cv2.medianBlur(levels, 2 * radius + 1).astype(np.float32) / 255.0
    return guided_smooth(median, radius, SMOOTH_EPS)


def guided_smooth(plane: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Self-guided filter of a float [H, W] plane over windows of (2 * radius + 1)^2 pixels."""
    size = 2 * radius + 1
    p = plane.astype(np.float64)

    def box(a: np.ndarray) -> np.ndarray:
        return ndimage.uniform_filter(a, size, mode="reflect")

    mean = box(p)
    var = np.maximum(box(p * p) - mean * mean, 0.0)
    a = var / (var + eps)  # ~1 across edges (kept), ~0 in flat or textured windows (averaged)
    b = (1.0 - a) * mean
    return (box(a) * p + box(b)).astype(np.float32)
