"""Cast shadows on the floor or backdrop of a product shot: the backdrop, darker, not the object.

A shadow is the backdrop at a lower light level: the ratio ``q`` of the pixel's luminance to the predicted
backdrop's is below one, its chromaticity is the backdrop's, and inside (the umbra) ``q`` is nearly constant
and the image flat. Its soft rim (the penumbra) lies between the umbra and the lit backdrop, at ratios in
between. An object's surface may be just as dark and colourless, but it is shaded and edged, so its ratio
is not flat at one level. Thin lines of the backdrop's colour, darker, are shadow too (``thin_shadows``).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

CHROMA = 0.08
"Largest chromaticity change (Lab a, b over lightness) a shadow makes."
DARKEST = 0.03
"Shadows are never darker than this ratio of the lit backdrop (nearly black is the object)."
BLEED = 3.0
"Beside a coloured object its shadow takes on some of its colour: this many times ``CHROMA`` may be shadow."
DIMMEST = 0.7
"Shadows are at least this much darker than the lit backdrop (a lighter dip is the backdrop model's error)."
LEVEL_WIDTH = 0.3
"The umbra's ratios lie within this of its level, in natural log."
MIN_SHARE = 0.002
"A shadow covers at least this share of the image (else there is none)."


def luminance_ratio(lab: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Linear luminance of ``lab`` over the backdrop's [H, W] (CIE: Y ~ ((L + 16) / 116)^3)."""
    return (((lab[..., 0] + 16.0) / (np.maximum(background[..., 0], 0.0) + 16.0)) ** 3).astype(np.float32)


def chromaticity(lab: np.ndarray) -> np.ndarray:
    """Lab a and b relative to lightness [..., 2] (unchanged when a colour is only lit more or less)."""
    return lab[..., 1:] / (np.maximum(lab[..., :1], 0.0) + 16.0)


def chroma_change(lab: np.ndarray, background: np.ndarray) -> np.ndarray:
    """How far the chromaticity moved from the backdrop's [H, W] (a, b relative to lightness)."""
    return np.linalg.norm(chromaticity(lab) - chromaticity(background), axis=-1).astype(np.float32)


def flatness(lightness: np.ndarray, reach: int) -> np.ndarray:
    """1 where lightness [H, W] has no structure of its own within ``reach`` px, 0 where it is edged or shaded."""
    g = np.hypot(ndimage.sobel(lightness, 0), ndimage.sobel(lightness, 1)) / 8.0  # [H, W] L per pixel
    energy = ndimage.uniform_filter(g, 2 * reach + 1)
    return np.clip(1.0 - (energy - 0.4) / 1.2, 0.0, 1.0).astype(np.float32)


def shadow_mask(lab: np.ndarray, background: np.ndarray, lit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bool [H, W]: the cast shadow (umbra and penumbra) in Lab image ``lab`` over its predicted backdrop, and
    bool [H, W]: every pixel that could be one by its colour alone (darker backdrop, about its chromaticity).

    ``lit`` marks pixels that are plainly the lit backdrop; the penumbra lies between them and the umbra.
    """
    reach = max(2, round(0.015 * max(lab.shape[:2])))
    q = luminance_ratio(lab, background)
    log_q = np.log(np.maximum(q, 1e-6))
    change = ndimage.gaussian_filter(chroma_change(lab, background), 1.5)
    plain = change < CHROMA
    candidates = plain & (flatness(lab[..., 0], 1) > 0.5) & (q < DIMMEST) & (q > DARKEST)
    dim = (change < BLEED * CHROMA) & (q < 0.85)
    if np.count_nonzero(candidates) < MIN_SHARE * q.size:
        return np.zeros(q.shape, bool), dim
    level = _level(log_q[candidates])
    umbra = plain & (np.abs(log_q - level) < LEVEL_WIDTH) & (flatness(lab[..., 0], 2) > 0.3)
    umbra = ndimage.binary_opening(umbra, iterations=1)
    near_umbra = ndimage.binary_dilation(umbra, iterations=reach)
    near_lit = ndimage.binary_dilation(lit, iterations=reach)
    penumbra = plain & near_umbra & near_lit & (log_q > level - LEVEL_WIDTH) & (q < 1.1)
    found = umbra | penumbra
    dark = plain & (q < THIN_DIMMEST) & (q > DARKEST)
    return found | thin_shadows(dark, reach), dim


def own_tint(dim: np.ndarray, lab: np.ndarray, background: np.ndarray, colour_edges: np.ndarray) -> np.ndarray:
    """``dim`` [H, W] bool without the pixels of an object's own pale colour: tinted (chromaticity off the
    backdrop's by at least ``CHROMA``; ``dim`` let them in as bleed) and farther than ``TINT_REACH`` of the
    long side from any place where the tint fades softly into the backdrop's colour (``colour_edges`` [H, W],
    ``boundary.colour_sharpness``, under ``SOFT_TINT``). The tint a coloured object throws on its shadow fades
    out softly; a pale object's colour ends at its outline, a sharp step of colour all round (a pale blue
    table's legs over a grey floor and their own shadow)."""
    change = ndimage.gaussian_filter(chroma_change(lab, background), 1.5)  # [H, W]
    tinted = dim & (change >= CHROMA)
    rim = ndimage.binary_dilation(tinted, np.ones((3, 3), bool)) & ~tinted & (change < CHROMA)
    soft = rim & (colour_edges < SOFT_TINT)
    if not tinted.any() or not soft.any():
        return dim & ~tinted
    far = ndimage.distance_transform_edt(~soft) > TINT_REACH * max(dim.shape)
    return dim & ~(tinted & far)


TINT_REACH = 0.1
"A tinted pixel farther than this (of the long side) from where the tint fades softly is the object's own."
SOFT_TINT = 0.5
"Where a tint ends with a colour sharpness under this, it fades (bleed); at or over it, it is an outline."


def thin_shadows(dark: np.ndarray, reach: int) -> np.ndarray:
    """Bool [H, W]: the thin lines among ``dark`` (the backdrop's colour, darker): a table leg's shadow on the
    floor, a few px wide. Such a line is edged on both sides, so never flat, and the umbra's opening removes
    it; a line is what an opening of ``THIN`` px removes, at least ``2 * reach`` px long (its box's longer
    side). Left to the object evidence, the legs' shadows joined the legs and closed the floor between them
    into the mask."""
    thin = dark & ~ndimage.binary_opening(dark, iterations=THIN)
    labels, count = ndimage.label(thin, np.ones((3, 3), bool))
    if count == 0:
        return thin
    boxes = ndimage.find_objects(labels)
    long_ = [i + 1 for i, b in enumerate(boxes) if max(s.stop - s.start for s in b) >= 2 * reach]
    return np.isin(labels, long_)


THIN, THIN_DIMMEST = 2, 0.6
"A line is what an opening of this many px removes, and darker than this ratio of the lit backdrop."


def _level(log_q: np.ndarray) -> float:
    """The most common log ratio (the umbra's level): the peak of a histogram of 0.05-wide bins."""
    bins = np.arange(np.log(DARKEST), np.log(DIMMEST) + 0.05, 0.05)
    counts, edges = np.histogram(log_q, bins=bins)
    counts = ndimage.uniform_filter1d(counts.astype(np.float32), 3)
    peak = int(np.argmax(counts))
    return float((edges[peak] + edges[peak + 1]) / 2)
