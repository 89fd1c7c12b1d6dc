"""The texels of a UV atlas: which face and where in it each covered texel lies, and the gutter fill.

Texel (r, c) has its centre at u = (c + 0.5) / S, v = 1 - (r + 0.5) / S (v up, as every UV in the project).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class TexelMap:
    """The covered texels of an S x S atlas, as flat lists of K texels."""

    size: int
    face: np.ndarray  # [K] int64, index into the mesh's faces
    rows: np.ndarray  # [K] int64
    cols: np.ndarray  # [K] int64
    bary: np.ndarray  # [K, 3] float32, barycentrics of the texel centre in its face

    @property
    def covered(self) -> np.ndarray:
        """[S, S] bool: texels inside some face."""
        out = np.zeros((self.size, self.size), bool)
        out[self.rows, self.cols] = True
        return out

    def interpolate(self, corner_values: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """Per-vertex values [V, C] -> per-texel values [K, C] (barycentric)."""
        corners = np.asarray(faces, np.int64)[self.face]  # [K, 3]
        return np.einsum("kc,kcd->kd", self.bary, np.asarray(corner_values, np.float32)[corners])

    def image(self, values: np.ndarray, background: float | tuple[float, ...] = 0.0) -> np.ndarray:
        """Per-texel values [K, C] -> an [S, S, C] image (``background`` where not covered)."""
        out = np.empty((self.size, self.size, values.shape[1]), values.dtype)
        out[...] = background
        out[self.rows, self.cols] = values
        return out


def texel_map(uvs: np.ndarray, faces: np.ndarray, size: int) -> TexelMap:
    """The covered texels of the atlas ``uvs`` [V, 2] (in [0, 1], v up) over faces [F, 3]; when two faces
    claim a texel centre (on a shared edge) the later one keeps it."""
    from ..mesh.normal_texture import covered_texels

    face, rows, cols, bary = covered_texels(np.asarray(uvs), np.asarray(faces, np.int64), (size, size))
    flat = rows * size + cols
    _, last = np.unique(flat[::-1], return_index=True)  # one entry per texel
    keep = len(flat) - 1 - last
    return TexelMap(size, face[keep], rows[keep], cols[keep], bary[keep].astype(np.float32))


def fill_gutters(image: np.ndarray, filled: np.ndarray) -> np.ndarray:
    """Every texel outside ``filled`` [S, S] takes the value of the nearest texel inside it: bilinear filtering
    and mipmaps at a chart's edge then blend that chart's own values, never the empty space between charts
    or a neighbouring chart (no seams)."""
    from scipy import ndimage

    if filled.all() or not filled.any():
        return image
    _, (rows, cols) = ndimage.distance_transform_edt(~filled, return_indices=True)
    return image[rows, cols]
