"""How well a mask's outline follows the object's outline in the image, and a mask refined to follow it better.

An object's outline against its backdrop is a sharp edge: the whole step, of lightness or of colour, in one or
two pixels. A cut through a smooth surface (a grey object's shaded side read as "the backdrop, darker") has no
edge at all, and a cast shadow's rim is a soft one (area light: a ramp many pixels wide) or a slightly wider
one (sun: the penumbra grows with the distance from the contact), and changes no colour. So the mean
sharpness of the edges under a mask's outline scores it: near 1 along true outlines, lower where it cuts a
surface or follows a shadow.

``refine`` relabels the pixels that could be backdrop or shadow by colour (darker backdrop, about its
chromaticity) by a minimum cut (SciPy's max-flow) that puts the outline where the fewest pixel pairs lie off
sharp edges: a shaded side joins the mask (cutting it off crosses a smooth surface), a soft shadow stays out
(its rim is no edge, the object's outline between them is).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy import ndimage

EDGE = 2.0
"An outline pixel lies on an edge when the Lab gradient there exceeds this (units per pixel)."
SHARPEST, SOFTEST = 1.7, 3.2
"Edge widths (px: the step over its steepest one-pixel slope) scored 1 (an object's outline) and 0 (soft)."


def edge_strength(lab: np.ndarray) -> np.ndarray:
    """Gradient magnitude [H, W] of the lightness (lightly smoothed) plus that of the two colour channels."""
    total = np.zeros(lab.shape[:2], np.float32)
    for k in range(3):
        plane = ndimage.gaussian_filter(lab[..., k], 1.0) if k == 0 else lab[..., k]
        total += np.hypot(ndimage.sobel(plane, 0), ndimage.sobel(plane, 1)) / 8.0
    return total


def edge_width(lightness: np.ndarray, reach: int = 3) -> np.ndarray:
    """How many pixels wide the edge through each pixel is [H, W]: the lightness step within ``reach`` over
    its steepest one-pixel slope nearby (about 1 for an anti-aliased outline, 5 or more for a soft shadow)."""
    slope = np.maximum(np.abs(np.diff(lightness, axis=1, append=lightness[:, -1:])),
                       np.abs(np.diff(lightness, axis=0, append=lightness[-1:])))
    size = 2 * reach + 1
    step = ndimage.maximum_filter(lightness, size) - ndimage.minimum_filter(lightness, size)
    return step / np.maximum(ndimage.maximum_filter(slope, 3), 1e-3)


def sharpness(lab: np.ndarray) -> np.ndarray:
    """Per pixel [H, W] in [0, 1]: 1 on (or next to) a sharp edge, 0 off edges or on a soft one: the larger of
    ``lightness_sharpness`` and ``colour_sharpness``. A shadow darkens without changing colour, so a sharp
    step of colour is an outline even where the lightness ramps (a pale blue leg's foot on its own grey
    shadow)."""
    return np.maximum(lightness_sharpness(lab), colour_sharpness(lab))


def lightness_sharpness(lab: np.ndarray) -> np.ndarray:
    """Per pixel [H, W] in [0, 1]: 1 on (or next to) an edge (Lab gradient over ``EDGE``) whose lightness
    steps as sharply as an outline, or not at all (an edge of colour alone); 0 where the lightness ramps."""
    on_edge = ndimage.maximum_filter(edge_strength(lab), 3) > EDGE
    return _steep(on_edge, ndimage.minimum_filter(edge_width(lab[..., 0]), 3))


def colour_sharpness(lab: np.ndarray) -> np.ndarray:
    """Per pixel [H, W] in [0, 1]: 1 on (or next to) a step of colour (Lab a or b by more than
    ``COLOUR_STEP`` within 3 px) as steep as an outline, 0 elsewhere."""
    strength = np.zeros(lab.shape[:2], np.float32)
    width = np.full(lab.shape[:2], np.inf, np.float32)
    for k in (1, 2):
        plane = lab[..., k]
        strength += np.hypot(ndimage.sobel(plane, 0), ndimage.sobel(plane, 1)) / 8.0
        step = ndimage.maximum_filter(plane, 7) - ndimage.minimum_filter(plane, 7)
        width = np.minimum(width, np.where(step > COLOUR_STEP, edge_width(plane), np.inf))
    on_edge = ndimage.maximum_filter(strength, 3) > EDGE
    return _steep(on_edge, ndimage.minimum_filter(width, 3))


def _steep(on_edge: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Edge pixels [H, W] bool scored by their edge's width [H, W] px: 1 up to ``SHARPEST``, 0 from ``SOFTEST``."""
    return (on_edge * np.clip((SOFTEST - width) / (SOFTEST - SHARPEST), 0.0, 1.0)).astype(np.float32)


COLOUR_STEP = 4.0
"A colour edge steps Lab a or b by more than this (less is noise, or the faint tint of a shadow's bleed)."


def outline_score(mask: np.ndarray, sharp: np.ndarray) -> float:
    """Mean ``sharp`` over the pixel pairs across the mask's outline, in [0, 1] (0 for an empty mask)."""
    count, total = _pairs(mask, sharp)
    return total / count if count else 0.0


def drop_soft_parts(mask: np.ndarray, sharp: np.ndarray) -> np.ndarray:
    """``mask`` [H, W] bool without the parts apart from its largest whose own outline is no edge (outline
    score under ``SOFT_PART``): a pool of light on the floor, brighter than the backdrop's model but with a
    rim as soft as the light's falloff. A real part of the object (a second leg, a handle cut free) has an
    outline as sharp as the object's. Specks (under ``PART_SHARE`` of the largest) stay."""
    labels, count = ndimage.label(mask)
    if count < 2:
        return mask
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
    largest = 1 + int(np.argmax(sizes))
    out = mask.copy()
    for i, grown, part in _parts(labels):
        if i == largest or sizes[i - 1] < PART_SHARE * sizes[largest - 1]:
            continue
        if outline_score(part, sharp[grown]) < SOFT_PART:
            out[grown] &= ~part
    return out


SOFT_PART = 0.3
"A separate part whose outline scores under this is no part of the object (a true outline scores 0.6-1)."
PART_SHARE = 0.02
"Parts smaller than this share of the largest are specks and stay: too small to judge by their outline."


def join_sharp_parts(mask: np.ndarray, larger: np.ndarray, sharp: np.ndarray, shadow: np.ndarray) -> np.ndarray:
    """``mask`` [H, W] bool with the parts of the ``larger`` hypothesis beyond it (not in its holes) that
    touch it and are edged all round (own outline score at least ``SHARP_PART``, at least ``JOIN_SHARE`` of
    the mask, at most ``SHADOW_PART`` of it the found cast ``shadow``). A cut along an edge inside the
    object (a leg off at the tabletop's underside) keeps the outline sharp, so the outline score cannot tell
    that the leg is missing; but the leg's own outline is sharp all round, where a shadow's rim is soft, or
    its pixels are the shadow found."""
    parts, count = ndimage.label(larger & ~ndimage.binary_fill_holes(mask))
    if count == 0:
        return mask
    near = ndimage.binary_dilation(mask)
    least = JOIN_SHARE * np.count_nonzero(mask)
    out = mask.copy()
    for _, grown, part in _parts(parts):
        if np.count_nonzero(part) < least or not (part & near[grown]).any():
            continue
        if (outline_score(part, sharp[grown]) >= SHARP_PART
                and np.count_nonzero(part & shadow[grown]) <= SHADOW_PART * np.count_nonzero(part)):
            out[grown] |= part
    return out


SHARP_PART = 0.9
"A part joins when its own outline scores at least this (a true outline 0.95-1; a soft shadow's 0.3-0.8)."
JOIN_SHARE = 0.01
"... and it covers at least this share of the mask (smaller ones are judged by too few outline pixels) ..."
SHADOW_PART = 0.1
"... and at most this share of it is the cast shadow found (a leg's sun shadow: a sharp thin line)."


def _parts(labels: np.ndarray) -> Iterator[tuple[int, tuple[slice, slice], np.ndarray]]:
    """For each labelled part of ``labels`` [H, W]: its label, its box grown by one pixel (the outline's outer
    pixels too) and its bool mask within that box."""
    for i, box in enumerate(ndimage.find_objects(labels), start=1):
        grown = (slice(max(0, box[0].start - 1), box[0].stop + 1), slice(max(0, box[1].start - 1), box[1].stop + 1))
        yield i, grown, labels[grown] == i


def _pairs(mask: np.ndarray, sharp: np.ndarray) -> tuple[int, float]:
    """Number of 4-neighbour pairs across the outline of ``mask`` and the sum of their sharpness (the larger
    of the two pixels')."""
    count, total = 0, 0.0
    for axis in (0, 1):
        a = [slice(None)] * 2
        b = [slice(None)] * 2
        a[axis], b[axis] = slice(None, -1), slice(1, None)
        cut = mask[tuple(a)] != mask[tuple(b)]
        count += int(np.count_nonzero(cut))
        total += float(np.maximum(sharp[tuple(a)], sharp[tuple(b)])[cut].sum())
    return count, total


def refine(mask: np.ndarray, ambiguous: np.ndarray, lab: np.ndarray, sharp: np.ndarray,
           frozen: np.ndarray, sure: np.ndarray | None = None) -> np.ndarray:
    """``mask`` [H, W] bool with its ``ambiguous`` pixels near it (could be backdrop or shadow by colour)
    relabelled by a minimum cut: the outline through them runs where the fewest pairs lie off sharp edges.
    Pixels outside the ambiguous set keep their label, and so does the core (the mask's, or with ``sure``
    that of the sure part: a mask that took in a cast shadow keeps no shadow pixel fixed); ``frozen`` ones
    (the border band) stay out.

    The cut costs ``1 - sharp`` per pair of neighbours it separates, least on the edge's crest, plus a small
    pull towards the mask's own label so that ties keep it. A shaded side joins (cutting it off crosses a
    smooth surface, keeping it ends at its sharp outline); a soft shadow stays out (its rim is no edge, the
    object's outline between them is).
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_flow

    reach = max(2, round(REACH * max(mask.shape)))
    core = ndimage.binary_erosion(mask if sure is None else sure, iterations=max(1, round(CORE * max(mask.shape))))
    free = ambiguous & ~frozen & ~core & ndimage.binary_dilation(mask, iterations=reach)
    count = int(np.count_nonzero(free))
    if count == 0:
        return mask.copy()
    node = np.full(mask.shape, -1, np.int64)
    node[free] = np.arange(count)
    source, sink = count, count + 1
    rows, cols, caps = [], [], []
    edges = edge_strength(lab)
    crest = edges / np.maximum(ndimage.maximum_filter(edges, 5), 1e-6)  # [H, W] 1 on the edge's crest
    cost = np.round(PAIR * (1.0 - sharp * crest)).astype(np.int64) + 1  # [H, W]; a pair takes the lower
    for axis in (0, 1):
        a = [slice(None)] * 2
        b = [slice(None)] * 2
        a[axis], b[axis] = slice(None, -1), slice(1, None)
        na, nb = node[tuple(a)], node[tuple(b)]
        ma, mb = mask[tuple(a)], mask[tuple(b)]
        pair = np.minimum(cost[tuple(a)], cost[tuple(b)])
        for this, other, other_in in ((na, nb, mb), (nb, na, ma)):
            keep = this >= 0
            both = keep & (other >= 0)
            rows.append(this[both])
            cols.append(other[both])
            caps.append(pair[both])
            fixed = keep & (other < 0)
            inside = fixed & other_in
            outside = fixed & ~other_in
            rows += [np.full(np.count_nonzero(inside), source), this[outside]]
            cols += [this[inside], np.full(np.count_nonzero(outside), sink)]
            caps += [pair[inside], pair[outside]]
    here = node[free]
    pulled_in = mask[free]
    rows += [np.full(np.count_nonzero(pulled_in), source), here[~pulled_in]]
    cols += [here[pulled_in], np.full(np.count_nonzero(~pulled_in), sink)]
    caps += [np.full(np.count_nonzero(pulled_in), PULL), np.full(np.count_nonzero(~pulled_in), PULL)]
    graph = csr_matrix((np.concatenate(caps).astype(np.int32), (np.concatenate(rows), np.concatenate(cols))),
                       shape=(count + 2, count + 2))
    flow = maximum_flow(graph, source, sink, method="dinic").flow
    residual = graph - flow
    residual.data = (residual.data > 0).astype(np.int8)
    residual.eliminate_zeros()
    from scipy.sparse.csgraph import breadth_first_order

    reached = breadth_first_order(residual, source, directed=True, return_predecessors=False)
    inside = np.zeros(count + 2, bool)
    inside[reached] = True
    out = mask.copy()
    out[free] = inside[:count]
    return out


PAIR = 200
"A pair of neighbours cut off any edge costs this much (on a sharp edge, 1)."
PULL = 1
"What relabelling one ambiguous pixel costs (so ties keep the mask as it was)."
REACH = 0.3
"Ambiguous pixels within this fraction of the long side of the mask may be relabelled."
CORE = 0.03
"The mask's pixels deeper inside than this (of the long side) keep their label: the cut cannot empty it."
