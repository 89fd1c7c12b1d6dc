"""Normal integration: unit normals -> height field, by a Poisson solve with Neumann boundaries.

The gradient field ``p = -n_x / n_z``, ``q = -n_y / n_z`` is integrated in the least-squares sense
(Frankot & Chellappa, "A method for enforcing integrability in shape from shading algorithms", PAMI 1988,
solved in the cosine basis as Simchony, Chellappa & Shao, "Direct analytical methods for solving Poisson
equations in computer vision problems", PAMI 1990). Gradients outside the mask are zero, so the background
stays flat and the object's outline is where the height returns to the background level.
"""

from __future__ import annotations

import numpy as np
from scipy import fft

MAX_SLOPE = 8.0  # |dz/dx| cap: silhouettes have nz -> 0, whose slope would be unbounded


def normals_to_gradients(normals: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit normals [H, W, 3] (+X right, +Y up, +Z to viewer) -> (dz/dx, dz/dy) per pixel, image axes.

    The second gradient is along rows going *down* the image, hence the sign of ``n_y``.
    """
    nz = np.maximum(normals[..., 2], 1.0 / MAX_SLOPE)
    gx = np.clip(-normals[..., 0] / nz, -MAX_SLOPE, MAX_SLOPE)  # [H, W] dz per column step
    gy = np.clip(normals[..., 1] / nz, -MAX_SLOPE, MAX_SLOPE)  # [H, W] dz per row step (down)
    return np.where(mask, gx, 0.0), np.where(mask, gy, 0.0)


def integrate_gradients(gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Least-squares height [H, W] whose forward differences best match (gx, gy); mean zero."""
    h, w = gx.shape
    # divergence with backward differences (the adjoint of forward differences), Neumann at the border
    div = np.zeros((h, w), np.float64)
    div[:, :-1] += gx[:, :-1]
    div[:, 1:] -= gx[:, :-1]
    div[:-1, :] += gy[:-1, :]
    div[1:, :] -= gy[:-1, :]
    d = fft.dctn(div, type=2, norm="ortho")
    yy = np.cos(np.pi * np.arange(h) / h)[:, None]
    xx = np.cos(np.pi * np.arange(w) / w)[None, :]
    denom = 2.0 * yy + 2.0 * xx - 4.0  # eigenvalues of the Neumann Laplacian
    denom[0, 0] = 1.0
    z = d / denom
    z[0, 0] = 0.0
    return fft.idctn(z, type=2, norm="ortho").astype(np.float32)


def integrate_normals(normals: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Height [H, W] in pixel units from unit normals inside ``mask``; 0 at the outline, >= 0 inside."""
    gx, gy = normals_to_gradients(normals, mask)
    z = integrate_gradients(gx, gy)
    rim = _outline(mask)
    base = np.median(z[rim]) if rim.any() else 0.0
    return np.where(mask, np.maximum(z - base, 0.0), 0.0).astype(np.float32)


def _outline(mask: np.ndarray) -> np.ndarray:
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner
