"""The automatic mask's boundary evidence (backend/relief/boundary.py) on small synthetic images: a sharp
outline scores high, a cut through a smooth surface or a soft shadow's rim low; a grey sphere's shaded side
(the backdrop's colour, darker) joins the mask while its cast shadow, soft or hard, stays out."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage

from backend.relief import boundary, segment


def _grey_sphere(soft: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RGB [120, 160, 3] of a grey sphere lit from the upper left on a lighter grey floor, its cast shadow to
    the lower right blurred by ``soft`` px; the sphere's mask and the shadow's (where it darkens the floor)."""
    h, w = 120, 160
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy, r = 0.45 * w, 0.45 * h, 0.28 * h
    dx, dy = (x - cx) / r, (y - cy) / r
    sphere = dx ** 2 + dy ** 2 < 1.0
    nz = np.sqrt(np.clip(1.0 - dx ** 2 - dy ** 2, 0.0, 1.0))
    shade = np.clip(-0.5 * dx - 0.5 * dy + 0.7 * nz, 0.0, 1.0) / np.sqrt(0.99)
    cast = ((x - cx - 0.9 * r) / (1.3 * r)) ** 2 + ((y - cy - 0.75 * r) / (0.5 * r)) ** 2 < 1.0
    dark = ndimage.gaussian_filter(cast.astype(np.float32), soft) if soft else cast.astype(np.float32)
    floor = (0.62 + 0.08 * y / h) * (1.0 - 0.55 * dark)
    grey = np.where(sphere, 0.08 + 0.55 * shade, floor)
    return np.repeat(grey[..., None], 3, axis=2).astype(np.float32), sphere, (dark > 0.05) & ~sphere


def _lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.count_nonzero(a & b) / max(1, np.count_nonzero(a | b)))


def test_a_true_outline_scores_higher_than_a_cut_through_the_shaded_side_or_a_soft_shadow():
    rgb, sphere, shadow = _grey_sphere(soft=6.0)
    sharp = boundary.sharpness(_lab(rgb))
    half = sphere & (np.arange(rgb.shape[1])[None, :] < 0.45 * rgb.shape[1])  # cut down the middle
    assert boundary.outline_score(sphere, sharp) > 0.9
    assert boundary.outline_score(half, sharp) < 0.7
    assert boundary.outline_score(sphere | shadow, sharp) < 0.6  # the soft rim is no sharp edge
    assert boundary.outline_score(np.zeros_like(sphere), sharp) == 0.0


def test_edge_width_tells_an_outline_from_a_soft_rim():
    step = np.zeros((40, 40), np.float32)
    step[:, 20:] = 50.0
    ramp = np.repeat(np.clip((np.arange(40, dtype=np.float32) - 14.0) * 5.0, 0.0, 50.0)[None], 40, axis=0)
    assert boundary.edge_width(step)[20, 20] < 1.5
    assert boundary.edge_width(ramp)[20, 20] > 4.0


@pytest.mark.parametrize("soft", [6.0, 0.0], ids=["soft shadow", "hard shadow"])
def test_refine_adds_the_shaded_side_and_leaves_the_shadow_out(soft):
    rgb, sphere, shadow = _grey_sphere(soft)
    lab = _lab(rgb)
    lit = sphere & (rgb[..., 0] > 0.35)  # what a colour rule keeps: the lit side
    ambiguous = (sphere & ~lit) | shadow  # darker than the floor, its colour (grey)
    frozen = segment.border_band(lit.shape)
    refined = boundary.refine(lit, ambiguous, lab, boundary.sharpness(lab), frozen)
    assert _iou(lit, sphere) < 0.8
    assert _iou(refined, sphere) > 0.93
    assert np.count_nonzero(refined & shadow) < 0.05 * np.count_nonzero(shadow)


def test_the_whole_estimate_keeps_a_grey_sphere_over_its_hard_shadow():
    rgb, sphere, _ = _grey_sphere(soft=0.0)
    found = segment.segment_object(rgb)
    assert _iou(found.mask, sphere) > 0.9 and found.confidence > 0.5


def test_the_cut_keeps_the_core_of_a_mask_that_is_all_shadow_coloured():
    y, x = np.mgrid[0:90, 0:120]
    disc = (x - 60) ** 2 + (y - 45) ** 2 < 25 ** 2
    grey = ndimage.gaussian_filter(np.where(disc, 0.3, 0.6), 3.0)  # dark grey on grey, a blurred outline
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    lab = _lab(rgb)
    everything = np.ones(disc.shape, bool)  # all of it could be "the backdrop, darker" by colour
    refined = boundary.refine(disc, everything, lab, boundary.sharpness(lab), segment.border_band(disc.shape))
    core = ndimage.binary_erosion(disc, iterations=round(boundary.CORE * 120))
    assert np.all(refined[core]) and not refined[:, :20].any()  # never emptied, never the backdrop


def _leg_shadows() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RGB [120, 160, 3]: a light floor with a wide cast shadow (a table top's) and two thin dark lines at the
    same level (its legs' shadows, 3 px wide, one of them apart from the wide one), plus a dark grey bar as
    wide as the shadow is (an object's shaded side: not thin); the lines' mask and the bar's."""
    h, w = 120, 160
    floor = np.full((h, w), 0.7, np.float32)
    floor[70:100, 90:150] *= 0.25  # the wide shadow
    lines = np.zeros((h, w), bool)
    lines[84:87, 30:90] = True  # joins the wide shadow
    lines[40:100, 40:43] = True  # a separate line
    floor[lines] *= 0.25
    bar = np.zeros((h, w), bool)
    bar[10:30, 100:140] = True
    floor[bar] = 0.7 * 0.25
    return np.repeat(floor[..., None], 3, axis=2), lines, bar


def test_thin_lines_at_the_shadows_level_are_shadow_and_a_wide_dark_patch_is_judged_as_before():
    from backend.relief.shadow import shadow_mask, thin_shadows

    rgb, lines, bar = _leg_shadows()
    lab = _lab(rgb)
    background = segment.coons_background(lab)
    lit = np.linalg.norm(lab - background, axis=-1) / segment.SCALE < 0.25
    shadow, _ = shadow_mask(lab, background, lit)
    assert shadow[lines].mean() > 0.9  # both lines, the separate one too
    assert not thin_shadows(bar, 2).any()  # 20 px thick: not a line
    assert thin_shadows(lines, 2)[lines].mean() > 0.9


def test_raggedness_is_one_for_a_convex_shape_and_large_for_fragments():
    y, x = np.mgrid[0:120, 0:160]
    disc = (x - 80) ** 2 + (y - 60) ** 2 < 40 ** 2
    ring = disc & ((x - 80) ** 2 + (y - 60) ** 2 > 20 ** 2)
    speckled = disc & (np.random.default_rng(0).random(disc.shape) < 0.7)
    assert segment.raggedness(disc) == pytest.approx(1.0, abs=0.1)
    assert 1.3 < segment.raggedness(ring) < segment.RAGGED_FROM
    assert segment.raggedness(speckled) > segment.RAGGED_TO


PHOTOS = ("coffee.png", "motorcycle_left.png")
"Photos nobody here made (scikit-image's bundled data): a cup on a wooden table, a motorbike in a garage."


@pytest.mark.parametrize("name", PHOTOS)
def test_a_mask_that_chased_a_textured_or_cluttered_backdrop_is_reported_unsure(name):
    from pathlib import Path

    import skimage

    from backend.images import load_image
    from backend.relief.mask import object_mask

    path = Path(skimage.__file__).parent / "data" / name
    if not path.is_file():
        pytest.skip(f"scikit-image ships without {name}")
    result = object_mask(load_image(str(path)))
    assert result.report.source == "estimated"
    assert result.report.confidence < 0.5 and "unsure" in result.report.warning
    assert "download segmenter" in result.report.warning  # and points to the learned segmenter


def test_a_separate_pool_of_light_leaves_the_mask_and_a_sharp_second_part_stays():
    rgb, sphere, _ = _grey_sphere(soft=6.0)
    h, w = sphere.shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    pool = np.exp(-(((x - 0.15 * w) / 9.0) ** 2 + ((y - 0.85 * h) / 7.0) ** 2))  # a soft spot of light
    block = (np.abs(x - 0.88 * w) < 6) & (np.abs(y - 0.2 * h) < 8)  # a second part with a sharp outline
    rgb = np.clip(rgb + 0.3 * pool[..., None], 0.0, 1.0)
    rgb[block] = 0.15
    lit = pool > 0.3
    sharp = boundary.sharpness(_lab(rgb))
    kept = boundary.drop_soft_parts(sphere | lit | block, sharp)
    assert not (kept & lit).any()
    assert np.array_equal(kept & ~lit, sphere | block)
    assert np.array_equal(boundary.drop_soft_parts(lit, sharp), lit)  # the largest part is never dropped


def _pale_leg(soft_foot: bool) -> tuple[np.ndarray, np.ndarray]:
    """RGB [80, 80, 3]: a pale blue leg on a grey floor, standing on a grey shadow about as dark as the leg;
    the leg's mask. With ``soft_foot`` the leg's blue fades into the shadow's grey over its lowest 12 rows
    instead (a tint that ends softly, as a shadow's bleed does)."""
    rgb = np.full((80, 80, 3), 0.6, np.float32)
    leg = np.zeros((80, 80), bool)
    leg[10:60, 36:44] = True
    rgb[55:70, 30:60] = 0.45  # its shadow on the floor, the floor's colour, darker
    blue = np.array([0.38, 0.45, 0.62], np.float32)  # pale blue about as dark as the shadow
    rgb[leg] = blue
    if soft_foot:
        fade = np.clip((np.arange(80, dtype=np.float32) - 48.0) / 12.0, 0.0, 1.0)[48:60, None, None]  # [12, 1, 1]
        rgb[48:60, 36:44] = (1 - fade) * blue + fade * 0.45
    return rgb, leg


def test_a_sharp_step_of_colour_is_an_edge_where_the_lightness_ramps():
    rgb, leg = _pale_leg(soft_foot=False)
    rgb[59, 36:44] = 0.5 * (rgb[58, 36:44] + rgb[60, 36:44])  # the foot's lightness: a two-row ramp
    lab = _lab(rgb)
    foot = (slice(59, 61), slice(37, 43))  # where the leg stands on its shadow
    assert boundary.colour_sharpness(lab)[foot].min() > 0.9 and boundary.sharpness(lab)[foot].min() > 0.9
    assert boundary.colour_sharpness(lab)[leg & ~ndimage.binary_dilation(~leg, iterations=3)].max() == 0.0
    ramp = np.repeat(np.linspace(0.0, 1.0, 80, dtype=np.float32)[None, :, None], 80, axis=0)  # [80, 80, 1]
    soft = (1 - ramp) * np.array([0.6, 0.6, 0.6], np.float32) + ramp * np.array([0.38, 0.45, 0.62], np.float32)
    assert boundary.colour_sharpness(_lab(soft)).max() == 0.0  # the same change of colour, spread out


def test_a_pale_objects_own_colour_is_no_shadow_tint_but_a_fading_tint_is():
    from backend.relief.shadow import own_tint

    outs = {}
    for soft_foot in (False, True):
        rgb, leg = _pale_leg(soft_foot)
        lab = _lab(rgb)
        background = np.full_like(lab, _lab(np.full((1, 1, 3), 0.6, np.float32))[0, 0])
        dim = np.ones(leg.shape, bool)  # let everything in as what could be shadow by colour
        outs[soft_foot] = own_tint(dim, lab, background, boundary.colour_sharpness(lab))
        away = ~ndimage.binary_dilation(leg, iterations=3)  # off the leg and its blurred rim
        assert outs[soft_foot][away].all()  # the untinted floor and shadow stay what could be shadow
    assert not outs[False][leg].any()  # edged all round in colour: the leg's own
    assert outs[True][52:58, 38:42].all()  # within reach of where the tint fades softly: may be a bleed
    assert not outs[True][10:30, 38:42].any()  # and far from it: the leg's own


def test_a_leg_cut_off_at_an_edge_inside_the_object_joins_again_a_shadow_does_not():
    sharp = np.zeros((80, 80), np.float32)
    top = np.zeros((80, 80), bool)
    top[10:25, 10:70] = True  # a tabletop
    leg = np.zeros_like(top)
    leg[25:60, 14:20] = True  # a leg under it, edged all round (its top edge is the tabletop's underside)
    pool = np.zeros_like(top)
    pool[25:40, 40:65] = True  # a patch under the table the larger hypothesis took in, its rim soft
    for part in (top, leg):
        sharp[part ^ ndimage.binary_erosion(part)] = 1.0
        sharp[ndimage.binary_dilation(part) & ~part] = 1.0
    larger = top | leg | pool
    out = boundary.join_sharp_parts(top, larger, sharp, np.zeros_like(top))
    assert np.array_equal(out, top | leg)
    assert np.array_equal(boundary.join_sharp_parts(top, larger, sharp, leg), top)  # the leg is found shadow
    apart = np.zeros_like(top)
    apart[50:70, 50:60] = True  # edged all round but not touching the mask
    speck = np.zeros_like(top)
    speck[25:26, 30:31] = True  # touching it, edged, but too small to judge (under 1 % of the mask)
    for part in (apart, speck):
        sharp[ndimage.binary_dilation(part) ^ ndimage.binary_erosion(part)] = 1.0
    out = boundary.join_sharp_parts(top, top | leg | apart | speck, sharp, np.zeros_like(top))
    assert np.array_equal(out, top | leg)
    ring = np.zeros_like(top)
    ring[10:60, 10:60] = True
    ring[25:45, 25:45] = False  # a hole edged all round: the larger hypothesis filled it, it stays open
    sharp_ring = np.zeros_like(sharp)
    sharp_ring[ndimage.binary_dilation(ring) ^ ndimage.binary_erosion(ring)] = 1.0
    filled = ndimage.binary_fill_holes(ring)
    assert np.array_equal(boundary.join_sharp_parts(ring, filled, sharp_ring, np.zeros_like(top)), ring)
