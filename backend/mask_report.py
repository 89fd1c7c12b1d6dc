"""Where a result's mask came from and how far to trust it, so that a whole-frame slab never passes silently.

Every engine result carries ``stats["mask"] = MaskReport(...).as_stats()``: the source (``alpha``: the image's
own alpha; ``given``: a mask image the user gave; ``learned``: the segmentation network; ``estimated``: the
classical estimate), the fraction of the image it covers, a confidence in [0, 1] (1 for alpha and given
masks) and a warning sentence, empty when there is nothing to say. The CLI prints the warning as a
``WARNING:`` line, the add-on shows it on the panel's result line and the scripting API raises it as a
``GenerationWarning``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SOURCES = ("alpha", "given", "learned", "estimated")
WHOLE_FRAME = 0.9
"A mask covering more than this fraction of the image is reported as (nearly) the whole frame."
UNSURE = 0.5
"An estimate with a confidence below this is reported as unsure."
WHAT_TO_DO = ("Give a mask image (panel: Mask; command line: --mask; API: mask_path) or use an image with a "
              "transparent background.")
LEARNED_TOO = (" The learned segmenter finds objects on textured or cluttered backdrops far better (download it "
               "once: add-on preferences, Learned segmenter; command line: python -m backend download segmenter).")
"Added to an automatic mask's warnings: the classical estimate is the fallback for the learned segmenter."
FIX_GIVEN = {"given": "Check the mask image: white (or opaque) marks the object, black (or transparent) the rest.",
             "alpha": "Check the image's alpha channel (transparent = background), or give a mask image "
                      "(panel: Mask; command line: --mask; API: mask_path)."}


@dataclass(frozen=True)
class MaskReport:
    source: str
    "alpha, given, learned or estimated."
    coverage: float
    "Fraction of the image's pixels inside the mask, in [0, 1]."
    confidence: float
    "How sure the source is that the mask is the object, in [0, 1]; 1 for alpha and given masks."
    warning: str = ""
    "What is wrong and what to do; empty when the mask looks right."
    alpha_ignored: bool = False
    "The image had an alpha channel that was opaque nearly everywhere, so it was not taken as the mask."

    def as_stats(self) -> dict[str, object]:
        """The report as plain JSON values (the protocol's ``Done.stats["mask"]``)."""
        return {"source": self.source, "coverage": round(self.coverage, 4),
                "confidence": round(self.confidence, 3), "warning": self.warning,
                "alpha_ignored": self.alpha_ignored}


def report_mask(mask: np.ndarray, source: str, confidence: float = 1.0, alpha_ignored: bool = False) -> MaskReport:
    """The report of bool ``mask`` [H, W] (at the image's size) from ``source``, with its warning if any."""
    if source not in SOURCES:
        raise ValueError(f"unknown mask source {source!r}")
    coverage = float(np.count_nonzero(mask)) / max(1, mask.size)
    confidence = float(min(1.0, max(0.0, confidence)))
    return MaskReport(source, coverage, confidence, _warning(source, coverage, confidence, alpha_ignored),
                      alpha_ignored)


def _warning(source: str, coverage: float, confidence: float, alpha_ignored: bool) -> str:
    note = " (the image's alpha channel is opaque nearly everywhere, so it was not used)" if alpha_ignored else ""
    if coverage > WHOLE_FRAME:
        return (f"The {_NAMES[source]} covers {coverage:.0%} of the image{note}: the result is a slab of nearly "
                f"the whole frame, not the object. {FIX_GIVEN.get(source, WHAT_TO_DO)}"
                + (LEARNED_TOO if source == "estimated" else ""))
    if source in ("estimated", "learned") and confidence < UNSURE:
        return (f"The {_NAMES[source]} is unsure (confidence {confidence:.2f}){note}: the outline may be wrong, "
                f"for example a shadow or the backdrop taken as the object. {WHAT_TO_DO}"
                + (LEARNED_TOO if source == "estimated" else ""))
    return ""


_NAMES = {"alpha": "image's alpha mask", "given": "mask image you gave", "learned": "learned mask",
          "estimated": "automatic mask"}
