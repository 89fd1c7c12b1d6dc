"""NiRNE / YOSO one-step normal estimation: image -> camera-space unit normals.

One network evaluation, no noise and no scheduler (``YOSONormalsPipeline`` with ``t_start=0``):

    latent = vae.encode(x).mode() * scaling_factor                         # [1, 4, H/8, W/8]
    down, mid = controlnet(latent, t=0, context=zeros(1, 257, 1024))       # 12 residuals + mid
    latent = unet(latent, t=0, context=zeros, down, mid)                  # [1, 4, H/8, W/8]
    normals = l2_normalise(vae.decode(latent / scaling_factor))           # [1, 3, H, W]
    normals = l2_normalise(lanczos(normals, input size))                  # the wrapper's way back

Output convention. YOSO reuses diffusers' Marigold image processor and its normals frame: +X right,
+Y up, +Z toward the viewer, i.e. already the OpenGL camera convention the backend uses, so
``YOSO_TO_OPENGL`` is the identity (inferred from the Marigold lineage; the release documents no frame).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..devices import Placement
from ..errors import BadInput
from ..jobs import JobContext
from ..memory import StageMemory
from .loading import NirneModels, load_nirne
from .preprocess import (
    composite_over_white,
    normalize_channels,
    processing_size,
    resize_normals,
    to_network_input,
    unpad,
)

YOSO_TO_OPENGL = np.array([1.0, 1.0, 1.0], np.float32)
"Per-axis signs taking YOSO normals to +X right, +Y up, +Z toward the viewer."
CONTEXT_TOKENS = 257
"Length of the release's all-zero text context (any length gives the same result)."
BACKGROUND = np.array([0.0, 0.0, 1.0], np.float32)
"Normal written outside the mask (flat, facing the viewer)."


def estimate_normals(models: NirneModels, image: np.ndarray, mask: np.ndarray | None, *,
                     processing_resolution: int = 768, ctx: JobContext | None = None,
                     memory: StageMemory | None = None) -> np.ndarray:
    """Float RGB/RGBA image [H, W, 3|4] in [0, 1] -> unit normals [H, W, 3] float32 (OpenGL camera frame).

    RGBA is composited over white first, as the release. Pixels outside ``mask`` (bool [H, W]) get
    ``BACKGROUND``; ``mask=None`` keeps every pixel.
    """
    if image.ndim != 3 or image.shape[-1] not in (3, 4) or min(image.shape[:2]) < 2:
        raise BadInput(f"NiRNE needs an [H, W, 3|4] image, got shape {image.shape}.",
                       hint="Use an RGB(A) image.")
    height, width = image.shape[:2]
    size = processing_size(height, width, processing_resolution)
    pixels, padding = to_network_input(composite_over_white(image), size)  # [1, 3, PH, PW]
    normals = predict(models, pixels, ctx, memory)  # [1, 3, PH, PW] unit, float32
    normals = resize_normals(unpad(normals, padding), (height, width))  # [1, 3, H, W]
    out = normals[0].permute(1, 2, 0).cpu().numpy() * YOSO_TO_OPENGL  # [H, W, 3]
    if mask is not None:
        out[~mask.astype(bool)] = BACKGROUND
    return np.ascontiguousarray(out, dtype=np.float32)


@torch.inference_mode()
def predict(models: NirneModels, pixels: torch.Tensor, ctx: JobContext | None = None,
            memory: StageMemory | None = None) -> torch.Tensor:
    """Network pass: image [1, 3, H, W] in [-1, 1] (H, W multiples of 8) -> unit normals [1, 3, H, W].

    ``memory``: three sub-stages (VAE encode; control branch + denoiser; VAE decode), each with only its
    networks on the device when offloading (the VAE decoder's full-size activations never meet the UNet)."""
    step = ctx.step if ctx is not None else (lambda *args: None)
    stage = memory.stage if memory is not None else _stay
    x = pixels.to(models.device, models.dtype)
    step("normals", 0, 4, "encoding the image")
    with stage("normals-encode", models.vae):
        latent = models.vae.encode(x).latent_dist.mode() * models.scaling_factor  # [1, 4, H/8, W/8]
    context = torch.zeros(1, CONTEXT_TOKENS, models.context_dim, device=models.device, dtype=models.dtype)
    step("normals", 1, 4, "control branch")
    with stage("normals", models.controlnet, models.unet):
        down, mid = models.controlnet(latent, 0, encoder_hidden_states=context, conditioning_scale=1.0)
        step("normals", 2, 4, "denoiser")
        latent = models.unet(latent, 0, encoder_hidden_states=context, down_block_additional_residuals=down,
                             mid_block_additional_residual=mid, return_dict=False)[0]  # [1, 4, H/8, W/8]
        del down, mid
    step("normals", 3, 4, "decoding the normal map")
    with stage("normals-decode", models.vae):
        decoded = models.vae.decode(latent / models.scaling_factor, return_dict=False)[0]  # [1, 3, H, W]
    step("normals", 4, 4, "done")
    return normalize_channels(decoded.float())


@contextmanager
def _stay(name: str, *modules: torch.nn.Module) -> Iterator[None]:
    """No memory plan: the networks stay where they are."""
    yield


@dataclass
class NirneEstimator:
    """The loaded normal estimator as the engines call it: ``estimator(rgba, mask, ctx) -> normals``."""

    models: NirneModels
    processing_resolution: int = 768
    memory: StageMemory | None = field(default=None, compare=False)
    "Whether the networks wait in CPU memory between calls (backend/memory.py); None: always on the device."

    @classmethod
    def load(cls, folder: Path | str, placement: Placement, processing_resolution: int = 768,
             memory: str = "resident") -> "NirneEstimator":
        """Load a yoso-normal release folder for ``placement`` (its dtype: fp16 on CUDA, fp32 on CPU...): onto
        the device (``resident``) or into CPU memory (``offload``: moved to the device for each call)."""
        stages = StageMemory(placement.device, memory)
        models = load_nirne(folder, stages.home, placement.dtype)
        models.device = stages.device  # where the inputs go; the networks follow them for each call
        return cls(models, processing_resolution, stages)

    def networks(self) -> tuple[torch.nn.Module, ...]:
        return self.models.unet, self.models.vae, self.models.controlnet

    def __call__(self, image: np.ndarray, mask: np.ndarray | None,
                 ctx: JobContext | None = None) -> np.ndarray:
        """Float RGBA/RGB [H, W, 3|4] and bool mask [H, W] -> unit normals [H, W, 3] (OpenGL camera frame)."""
        plan = {"memory": self.memory} if self.memory is not None else {}  # None (loaded by hand): nothing moves
        return estimate_normals(self.models, image, mask, processing_resolution=self.processing_resolution,
                                ctx=ctx, **plan)
