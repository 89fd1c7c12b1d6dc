"""How much of each outline pixel the object covers: a local two-colour matte along a mask's outline.

A pixel on an object's outline is a blend of the object's colour and the backdrop's, in linear light, in
proportion to how much of it the object covers (a renderer's pixel filter or a camera's blur). Near each
pixel on either side of the outline, the mean colour of the mask a pixel further in stands for the object
(``F``) and that of the backdrop a pixel further out for the backdrop (``B``); the pixel's coverage is the
projection of its colour onto the line from ``B`` to ``F``:

    alpha = <I - B, F - B> / |F - B|^2, clipped to [0, 1]

Thresholded at one half, that is the outline a coverage mask (an alpha channel, or a renderer's ground truth)
draws, to a fraction of a pixel; the mask alone can only put it between pixels, and a cut along an edge's
crest often lands a pixel in or out. A pixel darker than both (an object's dark rim at a grazing angle) lies
beyond ``F`` and stays in. Where the two sides look alike (under ``SEPARATION``) the mask's label is kept.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

WINDOW = 5
"Side (px) of the square around each outline pixel over which the object's and the backdrop's colours are taken."
SEPARATION = 0.02
"Least distance in linear RGB between the two colours for the matte to decide (else the mask's label stays)."


def coverage(mask: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """Float32 [H, W] in [0, 1]: 1 inside bool ``mask`` [H, W], 0 outside, and for the pixels on either side
    of its outline the share the object covers, estimated from sRGB ``rgb`` [H, W, 3] in [0, 1]."""
    light = _linear(rgb)  # [H, W, 3]
    inner = ndimage.binary_erosion(mask, border_value=1)  # the object a pixel in
    outer = ~ndimage.binary_dilation(mask)  # the backdrop a pixel out
    band = ~inner & ~outer  # [H, W] the outline's pixels, both sides
    alpha = mask.astype(np.float32)
    if not band.any() or not inner.any() or not outer.any():
        return alpha
    f, has_f = _local_mean(light, inner)
    b, has_b = _local_mean(light, outer)
    d = f - b  # [H, W, 3]
    norm2 = np.sum(d * d, axis=-1)
    decide = band & has_f & has_b & (norm2 > SEPARATION ** 2)
    share = np.sum((light - b) * d, axis=-1) / np.maximum(norm2, 1e-12)
    alpha[decide] = np.clip(share[decide], 0.0, 1.0)
    return alpha


def _local_mean(light: np.ndarray, where: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean of ``light`` [H, W, 3] over the pixels of ``where`` in each pixel's ``WINDOW`` square, and
    bool [H, W]: whether there were any."""
    weight = ndimage.uniform_filter(where.astype(np.float32), WINDOW, mode="nearest")  # [H, W]
    total = np.stack([ndimage.uniform_filter(light[..., k] * where, WINDOW, mode="nearest") for k in range(3)], -1)
    return total / np.maximum(weight, 1e-6)[..., None], weight > 0.5 / WINDOW ** 2


def _linear(rgb: np.ndarray) -> np.ndarray:
    """sRGB [..., 3] in [0, 1] to linear light (the IEC 61966-2-1 curve)."""
    rgb = np.clip(rgb, 0.0, 1.0).astype(np.float32)
    return np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4).astype(np.float32)
