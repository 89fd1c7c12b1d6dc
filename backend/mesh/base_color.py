"""The input image as a UV-mapped mesh's base-colour texture (the relief's front projection).

The texture is the image's pixels over the frame the mesh's UVs span (the relief engine's crop, the same
frame as its normal map), 8-bit sRGB as the file held them, alpha the mask. Texels outside the mask take
the colour of the nearest texel inside it: a renderer's filtering at the rim then blends object colours
only, never the background (often black under a transparent PNG's zero alpha).
"""

from __future__ import annotations

import numpy as np


def base_color_texture(rgba: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 4] from float RGBA [H, W, 4] in [0, 1] and the mask [H, W] (bool)."""
    from scipy import ndimage

    rgb = np.clip(np.asarray(rgba, np.float32)[..., :3], 0.0, 1.0)  # [H, W, 3]
    inside = np.asarray(mask, bool)
    if inside.any() and not inside.all():
        _, (rows, cols) = ndimage.distance_transform_edt(~inside, return_indices=True)
        rgb = rgb[rows, cols]  # every texel takes the nearest masked texel (itself when inside)
    out = np.empty(inside.shape + (4,), np.uint8)
    out[..., :3] = np.round(rgb * 255.0).astype(np.uint8)
    out[..., 3] = np.where(inside, 255, 0)
    return out
