"""Find the object in a photo without alpha: a background model from the border, then OpenCV's GrabCut.

1. Work at ``WORK_SIDE`` px at most (area average); the mask is upsampled at the end (its coverage, step 8,
   resampled bilinearly, then thresholded), so the cost does not grow with the photo.
2. Background model: a Coons patch through the four border strips (each a robust median across a thin band,
   smoothed along its length). It reproduces any backdrop of the form f(x) + g(y) exactly: a vertical
   gradient, a horizon line where a floor meets a wall, left-right light falloff, and nearly so vignetting.
3. Evidence per pixel: the Lab difference from the model, except inside a cast shadow found by
   ``shadow.shadow_mask`` (the backdrop, darker), where only a change of colour counts. What could be shadow
   by its colour alone does not include a pale object's own colour, edged all round (``shadow.own_tint``).
4. Seeds: a first mask from the evidence (hysteresis thresholds, gaps closed) is probable object, its
   inside sure object unless it could be shadow by colour; the border band and the found shadow are sure
   backdrop, shadow-coloured pixels probable backdrop (so the backdrop's colour model learns them). GrabCut
   (colour mixtures + a contrast-sensitive smoothness term) settles the rest on the object's box.
5. Clean-up: small specks dropped, holes filled unless they look like the backdrop or its shadow (a mug's
   handle).
6. Hypotheses: the shadow model's mask refined along the image's sharp edges (``boundary.refine``: the
   pixels that could be backdrop or shadow by colour are relabelled by a minimum cut that puts the outline
   on sharp edges; a grey object's shaded side joins, a soft shadow stays out), steps 3-5 again with no
   shadow model (every difference counts), and that plain mask refined the same way with none of its
   shadow-coloured pixels, nor those the shadow model finds as weak as the backdrop (``PLAIN_WEAK``), held
   fixed (a cast shadow it took in is cut off at the object's sharp outline). The refinement leaves the first
   mask's holes open (``kept_holes``: a torus's hole showing the floor in shadow). Each hypothesis drops its
   separate parts whose outline is no edge (``boundary.drop_soft_parts``: a pool of light on the floor). The
   refined mask wins unless another one, not collapsed to a few pixels (``SMALLEST``), has a clearly sharper
   outline (``boundary.outline_score``), or the one without a shadow model scores as well and is much larger
   (a dark, colourless object the shadow model took for shadow) than the leading one without adding mostly
   the cast shadow found. A sun's hard shadow stays out too: its rim is a sharp edge, but a slightly wider one
   than an outline, and longer than the object's outline where they meet. Edges are sharp steps of lightness
   or of colour (``boundary.lightness_sharpness``, ``boundary.colour_sharpness``). Then the parts of the plain
   mask beyond the chosen one that are edged all round join it (``boundary.join_sharp_parts``: a leg the cut
   took off at the tabletop's edge).
7. Faces: a region of backdrop-coloured pixels beside the mask that sharp edges enclose on every side but
   the mask's joins (``enclosed_faces``: a box's side lit like the floor, which the cut had left at the
   crease), and the mask's convex hull refined along sharp edges replaces the mask when it is convex
   (``SOLID``) and its outline nearly as sharp (``_convex``). A sphere with its cast shadow is not convex,
   and a mug's handle keeps its hole (the mask's holes are never added). A coloured object's mask drops the
   pixels of about the backdrop's chromaticity and light or darker (``drop_floor_coloured``: the floor
   between a table's legs, in shadow or tinted by the legs), and every mask drops the plateaus of the
   backdrop's own light that edges enclose (``drop_backdrop_plateaus``: the lit floor between a table's legs).
8. Outline: each pixel on either side of the mask's outline is taken in when the object covers at least half
   of it, by a local two-colour matte in linear light (``matte.coverage``: the pixel's colour between the
   object's just inside and the backdrop's just outside), so the outline lies where a coverage mask draws it,
   not a pixel in or out.

The confidence in [0, 1] is the least of three: the chosen outline's score by ``boundary.lightness_sharpness``,
rescaled (an object's outline is a sharp edge nearly everywhere; one through a smooth surface or along a soft
shadow is not; colour steps where the lightness ramps do not count here, since a photo's colour texture, fur,
is edged so everywhere), how little
shadow-coloured stuff lies just outside the mask (parts judged by their edges alone), and how far from ragged
the mask is (its outlines' length over its convex hull's perimeter: a mask that chased a textured backdrop
is hundreds of fragments); less when the mask touches the frame or the border band.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .boundary import colour_sharpness, drop_soft_parts, join_sharp_parts, lightness_sharpness, outline_score, refine
from .matte import coverage
from .shadow import CHROMA, chroma_change, chromaticity, luminance_ratio, own_tint, shadow_mask

WORK_SIDE = 512
"Segmentation runs on the image shrunk to at most this long side."
BAND = 0.02
"The border band (fraction of the long side, at least 2 px) that is taken as background."
ITERATIONS = 6
"GrabCut iterations (each re-fits the colour models and re-solves the cut)."


@dataclass(frozen=True)
class Segmentation:
    mask: np.ndarray  # [H, W] bool at the input's size
    confidence: float  # in [0, 1]


def segment_object(rgb: np.ndarray, check: Callable[[], None] = lambda: None) -> Segmentation:
    """The object in float RGB [H, W, 3] in [0, 1]; ``check`` is called between stages (cancel)."""
    import cv2

    h, w = rgb.shape[:2]
    small = _shrink(np.ascontiguousarray(rgb, np.float32))  # [h, w, 3]
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2Lab)  # L in [0, 100], a and b about +-100
    background = coons_background(lab)  # [h, w, 3]
    check()
    colour = colour_sharpness(lab)  # [h, w] in [0, 1]: sharp steps of colour
    evidence, shadow, dim = object_evidence(lab, background, True, colour)  # [h, w] >= 0 (~1 = clear); bools
    check()
    mask = _hypothesis(small, evidence, shadow, dim)
    check()
    light = lightness_sharpness(lab)  # [h, w] in [0, 1]: sharp steps of lightness
    sharp = np.maximum(light, colour)  # [h, w]: sharp edges of either kind
    ambiguous = shadow | dim  # what could be the backdrop, darker: judged by the edges alone
    band = border_band(mask.shape)
    open_ = ambiguous & ~kept_holes(mask)  # a torus's hole showing the floor stays open
    refined = refine(mask, open_, lab, sharp, band)
    reach = max(2, round(WIDER * max(mask.shape)))
    weak = ~mask & (evidence < LOW) & ndimage.binary_dilation(mask, iterations=reach)
    wider = refine(mask, open_ | weak, lab, sharp, band)  # a side as light as the backdrop behind it
    check()
    plain = _hypothesis(small, *object_evidence(lab, background, False))
    # the plain mask with its shadow-coloured pixels, and those the shadow model finds as weak as the backdrop
    # (the floor a little darker than predicted), cut again along sharp edges: a shadow it took in leaves
    loose = ambiguous | (plain & (evidence < PLAIN_WEAK))
    plain_cut = refine(plain, loose & ~kept_holes(plain), lab, sharp, band, sure=plain & ~loose)
    hypotheses = [drop_soft_parts(m, sharp) for m in (refined, wider, plain_cut, plain)]  # a pool of light: out
    chosen, score = _choose(hypotheses, sharp, shadow)
    chosen = join_sharp_parts(chosen, hypotheses[-1], sharp, shadow)  # a leg cut off at an edge inside
    chosen = enclosed_faces(chosen, ambiguous, lab, sharp, band)
    chosen, score = _convex(chosen, outline_score(chosen, sharp), ambiguous | weak, lab, sharp, band)
    chosen = drop_floor_coloured(chosen, lab, background)
    chosen = drop_backdrop_plateaus(chosen, lab, background)
    score = outline_score(chosen, light)  # colour edges where the lightness ramps (a photo's fur): not trusted
    return Segmentation(_grow(coverage(chosen, small), (h, w)), _confidence(chosen, score, ambiguous))


def enclosed_faces(mask: np.ndarray, ambiguous: np.ndarray, lab: np.ndarray, sharp: np.ndarray,
                   band: np.ndarray) -> np.ndarray:
    """``mask`` plus the backdrop-coloured faces beside it that sharp edges enclose (a box's side lit like
    the floor, cut off at the crease): each region of ambiguous pixels off sharp edges that touches the mask
    joins when the pixels around it (but the mask) lie on sharp edges nearly everywhere (``ENCLOSED``); the
    outline is then refined along the edges about it (``boundary.refine``). A cast shadow's rim is soft, or
    widens away from the contact, so a shadow stays out."""
    reach = max(2, round(FACE_REACH * max(mask.shape)))
    free = ambiguous & ~mask & ~band & ndimage.binary_dilation(mask, iterations=reach)
    cells, count = ndimage.label(free & (sharp < 0.5))
    if count == 0:
        return mask
    near = ndimage.binary_dilation(mask, iterations=3)
    faces = np.zeros_like(mask)
    for i, box in enumerate(ndimage.find_objects(cells), start=1):
        grown = tuple(slice(max(0, b.start - 3), b.stop + 3) for b in box)
        cell = cells[grown] == i
        if np.count_nonzero(cell) < MIN_FACE * np.count_nonzero(mask) or not (cell & near[grown]).any():
            continue
        ring = ndimage.binary_dilation(cell, iterations=2) & ~cell & ~mask[grown]
        if ring.any() and float(sharp[grown][ring].mean()) >= ENCLOSED:
            faces[grown] |= cell
    if not faces.any():
        return mask
    rim = ndimage.binary_dilation(faces, iterations=3)  # the crease and the face's own outline
    out = refine(mask | faces, ambiguous | rim, lab, sharp, band)
    return out if solidity(out) >= SOLID else mask  # a box stays convex; a ball with its shadow does not


def drop_floor_coloured(mask: np.ndarray, lab: np.ndarray, background: np.ndarray) -> np.ndarray:
    """A coloured object's mask (median chromaticity change from the backdrop over ``OWN_COLOUR`` times
    ``shadow.CHROMA``) without the pixels whose chromaticity is the backdrop's, or nearer it than
    ``BLEED_SHARE`` of the way to the object's (the floor between a table's legs, tinted by the light the
    legs throw on it), at about the backdrop's light or darker (ratio under ``BRIGHTER``: the floor in shadow,
    or lit more than the backdrop model predicts); specks left over dropped. A grey object's mask is returned
    as it is. A highlight is far brighter, and the object's own colour is far from the backdrop's."""
    change = ndimage.gaussian_filter(chroma_change(lab, background), 0.7)  # [H, W]
    if not mask.any() or float(np.median(change[mask])) < OWN_COLOUR * CHROMA:
        return mask
    own = np.median(chromaticity(lab)[mask], axis=0)  # [2] the object's typical a, b over lightness
    gap = float(np.median(np.linalg.norm(own - chromaticity(background)[mask], axis=-1)))
    q = luminance_ratio(lab, background)
    backdrop_like = (change < max(CHROMA, BLEED_SHARE * gap)) & (q < BRIGHTER) & (q > 0.1)
    return clean_mask(mask & ~backdrop_like)


BLEED_SHARE, BRIGHTER = 0.3, 1.2
"""Chromaticity this share of the way from the backdrop's to the object's is still the backdrop's; a pixel at
most this ratio of the predicted backdrop's light can be the backdrop."""


def clean_mask(mask: np.ndarray, min_fraction: float = 0.02) -> np.ndarray:
    """Remove specks: drop components smaller than ``min_fraction`` of the largest one (a new array)."""
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask.copy()
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
    return np.isin(labels, np.flatnonzero(sizes >= min_fraction * sizes.max()) + 1)


def drop_backdrop_plateaus(mask: np.ndarray, lab: np.ndarray, background: np.ndarray) -> np.ndarray:
    """``mask`` without the backdrop seen through an opening (the lit floor between a table's legs): a region
    of the mask of the backdrop's colour, within ``LIKE`` of its predicted light, with no structure of its
    own, whose light is one constant fraction of the predicted backdrop's (log ratio spread under
    ``PLATEAU``) and which edges part from the rest of the mask (``ENCLOSED_BY_EDGES``). An object's surface
    there has its own shading and goes on into the object without an edge: on the rendered set's object
    regions the spreads are 0.029 to 0.09 and at most 0.78 of their meeting with the mask is edged; the floor
    between table legs spreads 0.006 to 0.017, edged all round."""
    q = luminance_ratio(lab, background)
    log_q = np.log(np.maximum(q, 1e-6))
    g = np.hypot(ndimage.sobel(lab[..., 0], 0), ndimage.sobel(lab[..., 0], 1)) / 8.0  # L per pixel
    edged = ndimage.maximum_filter(g, 3) >= 1.0
    like = (np.abs(log_q) < LIKE) & (chroma_change(lab, background) < CHROMA) & ~edged
    cells, _ = ndimage.label(mask & like)
    total = np.count_nonzero(mask)
    out = mask.copy()
    for i, box in enumerate(ndimage.find_objects(cells), start=1):
        grown = tuple(slice(max(0, b.start - 1), b.stop + 1) for b in box)
        cell = cells[grown] == i
        size = np.count_nonzero(cell)
        if not MIN_FACE * total <= size <= 0.5 * total or float(log_q[grown][cell].std()) >= PLATEAU:
            continue
        ring = ndimage.binary_dilation(cell) & ~cell & mask[grown]  # where the cell meets the rest of the mask
        if ring.any() and float(edged[grown][ring].mean()) >= ENCLOSED_BY_EDGES:
            out[grown] &= ~cell
    return mask if np.count_nonzero(out) == total else clean_mask(out)


LIKE, PLATEAU, ENCLOSED_BY_EDGES = 0.15, 0.03, 0.95
"""A backdrop-like pixel is within this log ratio of the predicted light; a plateau's log ratios spread less;
this share of the pixels where it meets the rest of the mask are edged."""


OWN_COLOUR = 3.0
"A mask is a coloured object's when its median chromaticity change is at least this many ``shadow.CHROMA``."


def solidity(mask: np.ndarray) -> float:
    """The share of its filled convex hull that ``mask`` covers (1 for a convex shape)."""
    return np.count_nonzero(mask) / max(1, np.count_nonzero(convex_hull(mask)))


ENCLOSED = 0.85
"A backdrop-coloured region joins the mask when the mean edge sharpness around it is at least this."
FACE_REACH = 0.3
"Such regions are looked for within this fraction of the long side of the mask."
MIN_FACE = 0.02
"Regions smaller than this share of the mask are left as they are."


def _convex(mask: np.ndarray, score: float, ambiguous: np.ndarray, lab: np.ndarray, sharp: np.ndarray,
            band: np.ndarray) -> tuple[np.ndarray, float]:
    """The mask's convex hull refined along sharp edges (``boundary.refine``) when that comes out nearly
    convex (solidity ``SOLID``) with an outline nearly as sharp: a box's side lit like the floor, cut off
    at a crease shorter than its own outline, joins. Else ``mask`` as it was."""
    free = ambiguous & ~(ndimage.binary_fill_holes(mask) & ~mask)  # a mug's handle keeps its hole
    convex = refine(mask | (convex_hull(mask) & free), free, lab, sharp, band)
    convex_score = outline_score(convex, sharp)
    if solidity(convex) >= SOLID and convex_score >= max(CONVEX_SCORE, score - CONVEX_SLACK):
        return convex, convex_score
    return mask, score


SOLID = 0.975
"""A face joins, or the refined hull replaces the mask, only when the result covers at least this share of
its own convex hull."""
CONVEX_SCORE, CONVEX_SLACK = 0.85, 0.08
"... and when its outline score is at least the first and at most the second under the mask's."


def convex_hull(mask: np.ndarray) -> np.ndarray:
    """Bool [H, W]: the filled convex hull of ``mask`` (with ``mask`` itself)."""
    import cv2

    points = cv2.findNonZero(mask.astype(np.uint8))
    if points is None:
        return mask.copy()
    out = np.zeros(mask.shape, np.uint8)
    cv2.fillConvexPoly(out, cv2.convexHull(points), 1)
    return out.astype(bool) | mask


def _choose(masks: list[np.ndarray], sharp: np.ndarray, shadow: np.ndarray) -> tuple[np.ndarray, float]:
    """The leading mask and its outline score: the first, unless the best of the others (those covering at
    least ``SMALLEST`` of the first) scores higher by ``CHOOSE_MARGIN``. The last one (the hypothesis
    without a shadow model) still wins when it scores as well as the leader (within ``TIE``) and covers at
    least ``LARGER`` times as much: the shadow model took a dark, colourless object for shadow (a shadow the
    last one took in would have lowered its score: a shadow's rim is soft or wider than an outline), unless
    what it adds is mostly the cast ``shadow`` found (over ``SHADOW_SHARE``: a sun's hard-edged shadow)."""
    size = np.count_nonzero(masks[0])
    scores = [outline_score(m, sharp) if i == 0 or np.count_nonzero(m) >= SMALLEST * size else 0.0
              for i, m in enumerate(masks)]  # a cut that collapsed to a few pixels scores by chance
    best = 1 + int(np.argmax(scores[1:]))
    lead = best if scores[best] > scores[0] + CHOOSE_MARGIN else 0
    last = len(masks) - 1
    added = masks[last] & ~masks[lead]
    if (lead != last and scores[last] >= scores[lead] - TIE
            and np.count_nonzero(masks[last]) >= LARGER * max(1, np.count_nonzero(masks[lead]))
            and np.count_nonzero(added & shadow) <= SHADOW_SHARE * np.count_nonzero(added)):
        return masks[last], scores[last]
    return masks[lead], scores[lead]


CHOOSE_MARGIN = 0.03
"Another hypothesis leads over the refined mask when its outline score is higher by more than this ..."
TIE, LARGER = 0.005, 1.5
"... and the plain one wins when within ``TIE`` of the leader's score and covering ``LARGER`` times as much."
SHADOW_SHARE = 0.5
"... and what it adds is at most this much the cast shadow found (a dark object's added part: none of it)."
SMALLEST = 0.25
"Another hypothesis covering under this share of the refined mask is none (a plain cut left with 3 pixels)."


def kept_holes(mask: np.ndarray) -> np.ndarray:
    """Bool [H, W]: the holes of ``mask`` (a torus's or a mug handle's opening, where GrabCut saw the
    backdrop) less a margin of ``HOLE_MARGIN`` of the long side along their rim; the refinement leaves them
    backdrop (their far side may be the floor in shadow, darker like a shaded surface), but may still move
    the hole's outline."""
    margin = max(1, round(HOLE_MARGIN * max(mask.shape)))
    return ndimage.binary_erosion(ndimage.binary_fill_holes(mask) & ~mask, iterations=margin)


HOLE_MARGIN = 0.01
"Along a hole's rim this much (of the long side) stays free for the refinement."
WIDER = 0.05
"The wider refinement may also relabel pixels as weak as the backdrop within this (of the long side)."
PLAIN_WEAK = 0.3
"The plain mask's pixels with a shadow-aware evidence under this may leave it in its cut (none is sure)."


def _hypothesis(small: np.ndarray, evidence: np.ndarray, shadow: np.ndarray, dim: np.ndarray) -> np.ndarray:
    """One mask [h, w] bool from the evidence, the cast shadow found and what could be shadow by colour."""
    seeds = _seeds(evidence, shadow, dim, border_band(evidence.shape))
    mask = _grabcut(small, seeds)
    return _cleanup(mask, np.where(dim, 0.0, evidence))  # a hole of shadow-coloured floor stays a hole


def _shrink(rgb: np.ndarray) -> np.ndarray:
    import cv2

    h, w = rgb.shape[:2]
    scale = WORK_SIDE / max(h, w)
    if scale >= 1.0:
        return rgb
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def _grow(alpha: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bool mask at ``shape`` from the object's coverage [h, w] in [0, 1] (resampled bilinearly, then over
    one half: the outline falls between pixels of the work size too)."""
    import cv2

    if alpha.shape != shape:
        alpha = cv2.resize(alpha.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return alpha > 0.5


def border_band(shape: tuple[int, int]) -> np.ndarray:
    """Bool [H, W]: the outer band taken as background."""
    k = max(2, round(BAND * max(shape)))
    band = np.ones(shape, bool)
    band[k:-k, k:-k] = False
    return band


def coons_background(image: np.ndarray) -> np.ndarray:
    """The backdrop [H, W, C] predicted from the border: the Coons patch through the four border curves.

    Each border curve is the median across a band a few pixels deep, median-filtered along its length so a
    small object touching the frame does not bend it.
    """
    h, w = image.shape[:2]
    k = max(2, round(BAND * max(h, w)))
    top, bottom = _curve(image[:k], 0), _curve(image[-k:], 0)  # [w, C]
    left, right = _curve(image[:, :k], 1), _curve(image[:, -k:], 1)  # [h, C]
    u = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :, None]  # [1, w, 1] left -> right
    v = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]  # [h, 1, 1] top -> bottom
    rows = (1 - u) * left[:, None] + u * right[:, None]  # [h, w, C]
    cols = (1 - v) * top[None] + v * bottom[None]  # [h, w, C]
    corners = ((1 - u) * (1 - v) * top[0] + u * (1 - v) * top[-1] + (1 - u) * v * bottom[0] + u * v * bottom[-1])
    return (rows + cols - corners).astype(np.float32)


def _curve(strip: np.ndarray, axis: int) -> np.ndarray:
    """A border strip [k, n, C] (axis 0) or [n, k, C] (axis 1) -> its robust curve [n, C]."""
    curve = np.median(strip, axis=axis)  # [n, C]
    size = max(3, (curve.shape[0] // 12) | 1)
    return ndimage.median_filter(curve, size=(size, 1), mode="nearest")


def object_evidence(lab: np.ndarray, background: np.ndarray, shadows: bool = True,
                    colour_edges: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """How unlike the backdrop each pixel is [H, W] (0 = the backdrop; about 1 = a clear difference), the
    cast shadow found (bool [H, W]) and what could be shadow by its colour alone (bool [H, W]).

    Colour and lightness differences count fully, except the darkening inside a cast shadow (the backdrop,
    darker: ``shadow.shadow_mask``), where only a change of colour counts. A pale object's own colour, edged
    all round, is not taken for a shadow's tint (``shadow.own_tint``; ``colour_edges`` is
    ``boundary.colour_sharpness`` of ``lab``, computed when not given). Without ``shadows`` every difference
    counts and no pixel is taken for shadow.
    """
    d_ab = np.linalg.norm(lab[..., 1:] - background[..., 1:], axis=-1)  # [H, W]
    d_l = lab[..., 0] - background[..., 0]  # [H, W] > 0 brighter
    full = np.sqrt(d_ab ** 2 + d_l ** 2) / SCALE
    if not shadows:
        none = np.zeros(full.shape, bool)
        return full.astype(np.float32), none, none
    shadow, dim = shadow_mask(lab, background, lit=full < 0.25)
    dim = own_tint(dim, lab, background, colour_sharpness(lab) if colour_edges is None else colour_edges)
    evidence = np.where(shadow, d_ab / SCALE, full)
    return evidence.astype(np.float32), shadow, dim


SCALE = 15.0
"A Lab difference of this size counts as a clear difference (evidence 1)."


def _seeds(evidence: np.ndarray, shadow: np.ndarray, dim: np.ndarray, band: np.ndarray) -> np.ndarray:
    """GrabCut's labels [H, W] uint8: a first mask from the evidence (hysteresis, gaps closed) is probable
    object, and sure object deep inside it unless it could be a shadow; the found cast shadow is sure
    backdrop away from the first mask, probable backdrop near it; the border band is sure backdrop."""
    import cv2

    first = _first_mask(evidence)
    reach = max(2, round(TRIMAP * max(evidence.shape)))
    inner = ndimage.binary_erosion(first, iterations=reach)
    outer = ndimage.binary_dilation(first, iterations=reach)
    seeds = np.full(evidence.shape, cv2.GC_PR_BGD, np.uint8)
    seeds[shadow & ~outer] = cv2.GC_BGD
    seeds[first & ~shadow & ~dim] = cv2.GC_PR_FGD  # dim: the backdrop's model learns the shadow's colours too
    sure = inner & ~shadow & ~dim
    if np.count_nonzero(sure) < 0.1 * np.count_nonzero(inner):  # a colourless object: all of it could be shadow
        sure = inner & ~shadow
    seeds[sure] = cv2.GC_FGD
    seeds[band] = cv2.GC_BGD
    return seeds


TRIMAP = 0.02
"Half-width of the undecided band along the first mask's outline (fraction of the long side)."


def _first_mask(evidence: np.ndarray) -> np.ndarray:
    """Bool [H, W]: pixels above the low threshold connected to ones above the high one; gaps closed; holes
    filled unless they look like the backdrop."""
    weak, strong = evidence > LOW, evidence > HIGH
    labels, count = ndimage.label(weak)
    if count == 0:
        return weak
    keep = np.unique(labels[strong])
    mask = np.isin(labels, keep[keep > 0])
    close = max(1, round(0.01 * max(evidence.shape)))
    mask = ndimage.binary_closing(mask, iterations=close) | mask
    return _fill_holes(mask, evidence)


LOW, HIGH = 0.35, 0.8
"Hysteresis thresholds on the evidence for the first mask."


def _grabcut(rgb: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """GrabCut from ``seeds`` on the box around the seeded object (plus a margin, where its backdrop model
    learns the local backdrop); everything outside the box is backdrop. Bool [H, W]."""
    import cv2

    seeded = (seeds == cv2.GC_PR_FGD) | (seeds == cv2.GC_FGD)
    if not seeded.any():
        return np.zeros(seeds.shape, bool)
    rows, cols = np.nonzero(seeded)
    margin = max(8, round(MARGIN * max(seeds.shape)))
    box = (slice(max(rows.min() - margin, 0), rows.max() + margin + 1),
           slice(max(cols.min() - margin, 0), cols.max() + margin + 1))
    image = np.clip(rgb[box] * 255.0 + 0.5, 0, 255).astype(np.uint8)
    labels = np.ascontiguousarray(seeds[box])
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut's k-means initialisation: the same mask for the same image
    cv2.grabCut(image, labels, None, bgd, fgd, ITERATIONS, cv2.GC_INIT_WITH_MASK)
    mask = np.zeros(seeds.shape, bool)
    mask[box] = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    return mask


MARGIN = 0.12
"GrabCut sees the seeded object's box widened by this fraction of the long side on every side."


def _cleanup(mask: np.ndarray, evidence: np.ndarray) -> np.ndarray:
    """Specks dropped (components under 2 % of the largest); holes filled unless backdrop-like."""
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
    mask = np.isin(labels, np.flatnonzero(sizes >= 0.02 * sizes.max()) + 1)
    return _fill_holes(mask, evidence)


def _fill_holes(mask: np.ndarray, evidence: np.ndarray) -> np.ndarray:
    holes, count = ndimage.label(ndimage.binary_fill_holes(mask) & ~mask)
    if count:
        mean = ndimage.mean(evidence, holes, index=np.arange(1, count + 1))
        mask = mask | np.isin(holes, np.flatnonzero(mean > LOW) + 1)
    return mask


def _confidence(mask: np.ndarray, score: float, ambiguous: np.ndarray) -> float:
    """How far to trust ``mask`` in [0, 1]: the least of what its outline score says (0 at ``UNSURE_SCORE``
    or less, 1 at ``SURE_SCORE``: a true outline is a sharp edge nearly everywhere), what the ambiguous
    pixels just outside it say (shadow-coloured parts the estimate had to judge by their edges alone: 1 up
    to ``CLEAR_SHARE`` of the mask's size, 0.5 at ``UNCLEAR_SHARE``) and how ragged it is (``raggedness``: 1
    up to ``RAGGED_FROM``, 0 from ``RAGGED_TO``: a mask that chased a textured backdrop, a wooden table's
    grain or a cluttered room, is hundreds of fragments and holes); a mask reaching the frame's edge or the
    border band (which is taken as backdrop) may be the backdrop itself."""
    if not mask.any() or mask.all():
        return 0.0
    by_outline = (score - UNSURE_SCORE) / (SURE_SCORE - UNSURE_SCORE)
    reach = max(2, round(TRIMAP * max(mask.shape)))
    ring = ndimage.binary_dilation(mask, iterations=reach) & ~mask
    share = np.count_nonzero(ambiguous & ring) / np.count_nonzero(mask)
    by_ambiguity = 1.0 - 0.5 * (share - CLEAR_SHARE) / (UNCLEAR_SHARE - CLEAR_SHARE)
    by_shape = 1.0 - (raggedness(mask) - RAGGED_FROM) / (RAGGED_TO - RAGGED_FROM)
    frame = np.zeros_like(mask)
    frame[[0, -1]], frame[:, [0, -1]] = True, True
    band = border_band(mask.shape)
    rim = ndimage.binary_dilation(band, iterations=2) & ~band  # just inside the band
    touching = max(float(mask[frame].mean()), float(mask[rim].mean()))
    sure = min(by_outline, by_ambiguity, by_shape)
    return float(np.clip(sure, 0.0, 1.0) * max(0.0, 1.0 - 2.0 * touching))


def raggedness(mask: np.ndarray) -> float:
    """The length of every outline of ``mask`` (its parts' and its holes') over its convex hull's perimeter:
    1 for a convex shape, about 1.5 for a torus, 2 for a table; 5 to 6 for a mask that followed a wooden
    table's grain or a cluttered room."""
    import cv2

    mask8 = mask.astype(np.uint8)
    contours, _ = cv2.findContours(mask8, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    hull = cv2.convexHull(cv2.findNonZero(mask8))
    return sum(cv2.arcLength(c, True) for c in contours) / max(1.0, cv2.arcLength(hull, True))


RAGGED_FROM, RAGGED_TO = 2.5, 4.0
"Raggedness at which the confidence starts to fall, and where it reaches 0 (the rendered set's masks: 1.0-2.2)."
UNSURE_SCORE, SURE_SCORE = 0.55, 0.85
"Outline scores mapped to confidence 0 and 1 (the report warns under 0.5: a score under 0.7)."
CLEAR_SHARE, UNCLEAR_SHARE = 0.04, 0.10
"Ambiguous pixels just outside the mask, as a share of its size, for confidence 1 and 0.5."
