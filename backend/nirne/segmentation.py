"""Foreground masks for the normal estimator: alpha when the image has one, else an estimate.

The release segments alpha-less images with BiRefNet (``AutoModelForImageSegmentation`` with
``trust_remote_code=True``, 1024x1024 input, ImageNet normalisation, ``sigmoid(model(x)[-1])``, resized back,
thresholded at 128/255). We do not execute remote code, so the default estimate is classical
(``backend.relief.segment``: a border-predicted backdrop, cast shadows discounted, then GrabCut).

A learned matting model plugs in as ``matting``: any callable ``rgb [H, W, 3] float in [0, 1] -> alpha
[H, W] float in [0, 1]``. A reimplemented BiRefNet loaded from its safetensors would be wrapped so, with the
release's pre/post-processing inside the callable; the mask is then ``alpha > 0.5`` as the release's
``> 128``. ``matting.py`` provides one (RMBG-1.4, an IS-Net) when its weights are present; nothing here
loads or downloads a model.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import BadInput

Matting = Callable[[np.ndarray], np.ndarray]
METHODS = ("auto", "alpha", "estimate", "learned")
ALPHA_THRESHOLD = 0.5
"Alpha above this is foreground (the release's ``alpha > 128`` on uint8)."


def has_useful_alpha(image: np.ndarray) -> bool:
    """True for RGBA images whose alpha carries a mask (not opaque nearly everywhere; the release takes any
    alpha that is not fully opaque, which makes a stray transparent pixel turn the whole frame into the object)."""
    from ..images import alpha_carries_mask

    return image.shape[-1] == 4 and alpha_carries_mask(image[..., 3])


def foreground_mask(image: np.ndarray, method: str = "auto", matting: Matting | None = None) -> np.ndarray:
    """Bool [H, W] foreground of a float RGB/RGBA image [H, W, 3|4] in [0, 1].

    ``auto``: the alpha channel when useful, else ``matting`` when given, else the classical estimate.
    ``alpha``, ``estimate`` and ``learned`` force one source (``learned`` needs ``matting``).
    """
    if method not in METHODS:
        raise BadInput(f"Unknown mask method {method!r}.", hint=f"Use one of: {', '.join(METHODS)}.")
    if method == "alpha" or (method == "auto" and has_useful_alpha(image)):
        if image.shape[-1] != 4:
            raise BadInput("The image has no alpha channel.", hint="Use mask method 'auto' or 'estimate'.")
        return image[..., 3] > ALPHA_THRESHOLD
    if method == "learned" or (method == "auto" and matting is not None):
        if matting is None:
            raise BadInput("No matting model is loaded.", hint="Use mask method 'auto' or 'estimate'.")
        return np.asarray(matting(np.asarray(image[..., :3], np.float32))) > ALPHA_THRESHOLD
    return estimate_background_mask(image[..., :3])


def estimate_background_mask(rgb: np.ndarray) -> np.ndarray:
    """Classical foreground estimate of an RGB image on a plain background (bool [H, W])."""
    from ..relief.mask import estimate_mask

    return estimate_mask(np.asarray(rgb, np.float32))
