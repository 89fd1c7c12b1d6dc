"""The outline's coverage matte (backend/relief/matte.py) on small synthetic images whose coverage is known:
a mask a pixel off is put back on the object's outline, a dark rim stays in, and where the two sides look
alike the mask's labels are kept."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from backend.relief import matte


def _srgb(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055).astype(np.float32)


def _disc_coverage(h: int = 64, w: int = 80, radius: float = 17.3, sub: int = 8) -> np.ndarray:
    """Float [h, w]: the share of each pixel a disc covers (sampled on a ``sub`` x ``sub`` grid)."""
    y, x = np.mgrid[0:h * sub, 0:w * sub].astype(np.float32)
    inside = ((x + 0.5) / sub - 0.47 * w) ** 2 + ((y + 0.5) / sub - 0.52 * h) ** 2 < radius ** 2
    return inside.reshape(h, sub, w, sub).mean(axis=(1, 3))


def _blend(alpha: np.ndarray, fg: tuple[float, float, float], bg: tuple[float, float, float]) -> np.ndarray:
    """sRGB [h, w, 3] of linear colour ``fg`` over ``bg`` with coverage ``alpha``."""
    a = alpha[..., None]
    return _srgb(a * np.array(fg, np.float32) + (1 - a) * np.array(bg, np.float32))


def test_a_mask_a_pixel_too_wide_or_too_narrow_is_put_back_on_the_outline():
    alpha = _disc_coverage()
    truth = alpha > 0.5
    rgb = _blend(alpha, (0.6, 0.1, 0.05), (0.5, 0.5, 0.55))
    for off in (ndimage.binary_dilation(truth), ndimage.binary_erosion(truth)):
        assert np.count_nonzero(off ^ truth) > 80
        fixed = matte.coverage(off, rgb) > 0.5
        assert np.count_nonzero(fixed ^ truth) <= 4  # pixels at coverage ~0.5 may go either way


def test_the_coverage_is_measured_in_linear_light():
    alpha = _disc_coverage()
    rgb = _blend(alpha, (0.9, 0.9, 0.9), (0.02, 0.02, 0.02))  # a light disc on black: sRGB bends the blend most
    est = matte.coverage(alpha > 0.5, rgb)
    band = (alpha > 0.1) & (alpha < 0.9)
    assert float(np.abs(est[band] - alpha[band]).max()) < 0.1


def test_a_dark_rim_beyond_the_objects_colour_stays_in():
    alpha = _disc_coverage()
    truth = alpha > 0.5
    rim = truth & ~ndimage.binary_erosion(truth)
    lit = np.where(rim[..., None], np.float32(0.02), _blend(alpha, (0.3, 0.3, 0.3), (0.8, 0.8, 0.8)))
    assert (matte.coverage(truth, lit) > 0.5)[rim].all()


def test_where_both_sides_look_alike_the_labels_stay():
    mask = _disc_coverage() > 0.5
    flat = np.full(mask.shape + (3,), 0.5, np.float32)
    assert np.array_equal(matte.coverage(mask, flat) > 0.5, mask)
    assert np.array_equal(matte.coverage(np.zeros_like(mask), flat), np.zeros(mask.shape, np.float32))
    assert np.array_equal(matte.coverage(np.ones_like(mask), flat), np.ones(mask.shape, np.float32))
