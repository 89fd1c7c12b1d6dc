"""Foreground masks: the alpha channel when it carries one, a mask image you gave, else a segmentation.

``object_mask`` is the relief engine's choice without the learned model: a given mask, the image's alpha
(only when it carries a mask: ``images.alpha_carries_mask``), else ``segment.segment_object`` (a
border-seeded GrabCut, refined along the image's sharp edges by ``boundary.refine``). Each comes with a
``MaskReport`` (source, coverage, confidence, warning).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from ..images import LoadedImage
from ..mask_report import MaskReport, report_mask
from .segment import Segmentation, clean_mask, segment_object


class ObjectMask(NamedTuple):
    mask: np.ndarray  # [H, W] bool
    report: MaskReport


def object_mask(image: LoadedImage, check: Callable[[], None] = lambda: None) -> ObjectMask:
    """The object's mask of ``image`` (given, alpha or estimated) and its report."""
    if image.has_alpha:
        mask = clean_mask(image.rgba[..., 3] > 0.5)
        return ObjectMask(mask, report_mask(mask, "given" if image.mask_given else "alpha"))
    found = estimate(image.rgba[..., :3], check)
    return ObjectMask(found.mask, report_mask(found.mask, "estimated", found.confidence, image.alpha_ignored))


def estimate_mask(rgb: np.ndarray) -> np.ndarray:
    """The object of a photo without alpha, bool [H, W] (see ``segment.segment_object``)."""
    return estimate(rgb).mask


def estimate(rgb: np.ndarray, check: Callable[[], None] = lambda: None) -> Segmentation:
    """The segmentation (mask and confidence) of float RGB [H, W, 3]; ``check`` is called between stages."""
    return segment_object(np.asarray(rgb, np.float32), check)

