"""The input picture baked as a mesh's base-colour texture.

Texels the input view sees take the picture's colour where their surface point projects (bilinear, sRGB as
the file held it). The unseen side has no colour to take: unseen texels within ``RIM_TEXELS`` of a seen one
take its colour (the outline of an occluder, which a texel's centre may miss by a fraction of a pixel), the
rest the mean colour of the seen ones (a plausible, seam-free continuation; the picture says nothing about
the back). Texels between charts then
take the nearest covered texel's colour (``texels.fill_gutters``), so filtering never bleeds across seams.
Alpha is 255 on seen texels and 0 elsewhere (the add-on's plain material takes the mean of the seen ones).
"""

from __future__ import annotations

import numpy as np

from .picture import sample, spread_foreground
from .texels import TexelMap, fill_gutters
from .visibility import Visibility

FALLBACK_GREY = 0.8
"The colour of a mesh of which no texel is seen (sRGB)."
RIM_TEXELS = 3.0
"""Unseen texels this close to a seen one take its colour (the rim where an occluder's outline cuts a face);
less than the unwrap's padding, so no chart takes another's colour."""


def bake_base_color(texels: TexelMap, seen: Visibility, rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """uint8 RGBA [S, S, 4] from the picture ``rgb`` [H, W, 3] (floats in [0, 1]) and its mask [H, W]."""
    picture = spread_foreground(np.clip(np.asarray(rgb, np.float32), 0.0, 1.0), mask)
    colors = np.empty((len(texels.face), 3), np.float32)
    hit = seen.seen
    colors[hit] = sample(picture, seen.pixels[hit])
    colors[~hit] = colors[hit].mean(axis=0) if hit.any() else FALLBACK_GREY
    alpha = hit.astype(np.float32)[:, None]
    image = texels.image(np.concatenate([colors, alpha], axis=1))  # [S, S, 4]
    image[..., :3] = _extend_rims(image[..., :3], texels, hit)
    image[..., :3] = fill_gutters(image[..., :3], texels.covered)
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def _extend_rims(rgb: np.ndarray, texels: TexelMap, hit: np.ndarray) -> np.ndarray:
    """Unseen covered texels near a seen texel take the nearest seen texel's colour ([S, S, 3])."""
    from scipy import ndimage

    seen = np.zeros(rgb.shape[:2], bool)
    seen[texels.rows[hit], texels.cols[hit]] = True
    if not seen.any():
        return rgb
    distance, (rows, cols) = ndimage.distance_transform_edt(~seen, return_indices=True)
    r, c = texels.rows[~hit], texels.cols[~hit]
    near = distance[r, c] <= RIM_TEXELS
    out = rgb.copy()
    out[r[near], c[near]] = rgb[rows[r[near], c[near]], cols[r[near], c[near]]]
    return out
