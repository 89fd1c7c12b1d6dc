"""Learned foreground segmentation for images without alpha: an IS-Net-class network (RMBG-1.4 weights).

The official app segments alpha-less images with BiRefNet through remote code; here the optional learned
model is BRIA's RMBG-1.4 (``briaai/RMBG-1.4``, an IS-Net trained for background removal, the same task),
reimplemented in ``models/isnet.py`` and loaded strictly from its ``model.safetensors``. Its weights carry
BRIA's own licence (non-commercial use); they are fetched only on request (``python -m backend download
rmbg``). Without them the classical segmentation (``relief/segment.py``) is used.

Pre/post-processing as the model card: resize to 1024 x 1024 (bilinear), ``x / 255 - 0.5``, sigmoid of the
first side output, resized back, min-max normalised to [0, 1]. The mask is then ``alpha > 0.5``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..images import LoadedImage
from ..settings import BackendSettings

MODEL_NAME = "rmbg"
WEIGHTS_FILE = "model.safetensors"
INPUT_SIDE = 1024
RECHECK_SECONDS = 10.0


@dataclass
class LearnedMatting:
    """A loaded segmentation network as a ``Matting`` callable: rgb [H, W, 3] in [0, 1] -> alpha [H, W]."""

    model: Any  # IsNetSegmenter
    device: Any  # torch.device
    side: int = INPUT_SIDE

    @classmethod
    def load(cls, folder: Path, device: Any) -> LearnedMatting:
        """Load ``<folder>/model.safetensors``; the channel width is read off its ``conv_in`` (64 = release)."""
        import torch

        from ..errors import WeightsInvalid
        from ..models.isnet import IsNetConfig, IsNetSegmenter
        from ..models.loading import load_into, read_header

        path = Path(folder) / WEIGHTS_FILE
        stem = read_header(path).get("conv_in.weight")
        if stem is None or len(stem) != 4 or stem[1] != 3:
            raise WeightsInvalid(f"{path} has no 'conv_in.weight': not an RMBG-1.4 / IS-Net checkpoint.",
                                 hint=f"Download it again: python -m backend download {MODEL_NAME}")
        with torch.device("meta"):
            model = IsNetSegmenter(IsNetConfig(in_channels=stem[1], width=stem[0] / 64))
        return cls(load_into(model, path, device), device)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        h, w = rgb.shape[:2]
        if max(h, w) > 2 * self.side:  # a huge photo: shrink on the CPU first (antialiased, and no 1 GB upload)
            from PIL import Image

            small = Image.fromarray(np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8))
            rgb = np.asarray(small.resize((2 * self.side, 2 * self.side), Image.Resampling.BOX), np.float32) / 255.0
        x = torch.from_numpy(np.ascontiguousarray(rgb, np.float32)).permute(2, 0, 1)[None].to(self.device)
        x = F.interpolate(x, size=(self.side, self.side), mode="bilinear", align_corners=False) - 0.5
        with torch.inference_mode():
            prob = self.model(x)  # [1, 1, side, side]
        prob = F.interpolate(prob.float(), size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        lo, hi = prob.min(), prob.max()
        alpha = (prob - lo) / (hi - lo) if hi > lo else torch.zeros_like(prob)
        return alpha.cpu().numpy()


@dataclass
class MattingProvider:
    """The learned model when its weights are present (loaded once, shared by the engines), else None."""

    settings: BackendSettings
    _loaded: LearnedMatting | None = field(default=None, init=False)
    _present: bool = field(default=False, init=False)
    _checked_at: float = field(default=-1e9, init=False)
    "Absent weights are looked up again at most every RECHECK_SECONDS (the cache look-up takes ~60 ms)."

    def available(self) -> bool:
        import time

        from ..weights import status

        now = time.monotonic()
        if not self._present and now - self._checked_at > RECHECK_SECONDS:  # a download is seen soon after
            self._present, self._checked_at = status(MODEL_NAME, self.settings)[0], now
        return self._loaded is not None or self._present

    def get(self, placement_name: str = "auto") -> LearnedMatting | None:
        if self._loaded is None and self.available():
            from ..devices import choose_placement
            from ..weights import resolve

            placement = choose_placement(placement_name, "fp32")
            self._loaded = LearnedMatting.load(resolve(MODEL_NAME, self.settings), placement.device)
        return self._loaded

    def release(self) -> None:
        self._loaded, self._present, self._checked_at = None, False, -1e9  # look again on the next request


def image_for_mask(image: LoadedImage, choice: str) -> LoadedImage:
    """``image`` as the engines' ``mask`` parameter wants it: a forced ``estimate`` or ``learned`` ignores
    the image's own alpha (the image is taken as opaque); ``auto`` keeps it (alpha, then learned, then
    estimate). A mask image the user gave always wins."""
    if choice not in ("estimate", "learned") or not image.has_alpha or image.mask_given:
        return image
    rgba = image.rgba.copy()  # [H, W, 4]
    rgba[..., 3] = 1.0
    return replace(image, rgba=rgba, has_alpha=False)


def choose_matting(provider: MattingProvider | None, choice: str, placement_name: str,
                   has_alpha: bool) -> LearnedMatting | None:
    """The learned segmenter to use for one request, or None for alpha / the classical estimate.

    ``choice`` is the engines' ``mask`` parameter: ``auto``, ``estimate`` or ``learned``; ``has_alpha`` is
    the image's after ``image_for_mask``. A forced ``learned`` without its weights raises ``WeightsMissing``.
    """
    from ..errors import BackendError, WeightsMissing
    from ..weights import download_hint

    if has_alpha or choice == "estimate":
        return None
    try:
        learned = provider.get(placement_name) if provider is not None else None
    except BackendError as exc:  # damaged optional weights: 'auto' falls back, 'learned' says why
        if choice == "learned":
            raise
        print(f"[hi3dgen] learned segmentation unavailable, using the estimate: {exc.message}", file=sys.stderr)
        learned = None
    if learned is None and choice == "learned":
        settings = provider.settings if provider is not None else BackendSettings()
        raise WeightsMissing("Mask 'learned' was chosen but the segmentation model's weights are not present.",
                             hint=f"{download_hint([MODEL_NAME], settings)} Or choose mask 'auto' or 'estimate'.")
    return learned
