"""Image <-> network tensors for the YOSO normal estimator, as the release's predictor and pipeline do it.

Release path (``hubconf.py::Predictor`` then ``YOSONormalsPipeline``): composite over white, LANCZOS
resize so the long side is the processing resolution with each side rounded to a multiple of 64, ``[-1, 1]``,
replicate-pad bottom/right to a multiple of 8; after the networks: unpad, then back to the input's size.

The way back: the release's pipeline resizes to its own input (the wrapper's 768 px image, so a no-op), then
the wrapper writes uint8 colours and resizes them to the input's size with Pillow's LANCZOS (antialiased
when shrinking). Here the same LANCZOS kernel runs on the float normals (Pillow, mode "F"), which are then
renormalised.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

LATENT_ALIGN = 8
"The VAE downsamples by 8: the network input must be a multiple of it."
SIDE_MULTIPLE = 64
"The release's wrapper rounds each resized side to a multiple of 64."


def composite_over_white(image: np.ndarray) -> np.ndarray:
    """Float RGB or RGBA [H, W, 3|4] in [0, 1] -> RGB [H, W, 3] composited over white (alpha as weight)."""
    rgb = np.asarray(image[..., :3], dtype=np.float32)
    if image.shape[-1] < 4:
        return rgb
    alpha = np.asarray(image[..., 3:4], dtype=np.float32)  # [H, W, 1]
    return rgb * alpha + (1.0 - alpha)  # as PIL Image.composite(rgb, white, alpha)


def processing_size(height: int, width: int, resolution: int) -> tuple[int, int]:
    """(H, W) with the long side scaled to ``resolution``, each side rounded to a multiple of 64 (>= 64)."""
    scale = resolution / max(height, width)
    h = max(SIDE_MULTIPLE, int(np.round(height * scale / SIDE_MULTIPLE)) * SIDE_MULTIPLE)
    w = max(SIDE_MULTIPLE, int(np.round(width * scale / SIDE_MULTIPLE)) * SIDE_MULTIPLE)
    return h, w


def to_network_input(rgb: np.ndarray, size: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
    """RGB [H, W, 3] in [0, 1] -> ([1, 3, PH, PW] in [-1, 1], (pad_h, pad_w)); LANCZOS on uint8 (release)."""
    pixels = Image.fromarray(np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if pixels.size != (size[1], size[0]):
        pixels = pixels.resize((size[1], size[0]), Image.Resampling.LANCZOS)
    x = torch.from_numpy(np.asarray(pixels, dtype=np.float32) / 255.0)  # [h, w, 3]
    x = x.permute(2, 0, 1)[None] * 2.0 - 1.0  # [1, 3, h, w]
    return pad_to_multiple(x, LATENT_ALIGN)


def pad_to_multiple(x: torch.Tensor, align: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Replicate-pad [B, C, H, W] at the bottom and right to multiples of ``align``."""
    pad_h, pad_w = -x.shape[2] % align, -x.shape[3] % align
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    return x, (pad_h, pad_w)


def unpad(x: torch.Tensor, padding: tuple[int, int]) -> torch.Tensor:
    """Undo ``pad_to_multiple`` on [B, C, H, W]."""
    h, w = x.shape[2] - padding[0], x.shape[3] - padding[1]
    return x[:, :, :h, :w]


def normalize_channels(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-pixel L2 normalisation of [B, 3, H, W] (the release clamps the norm at ``eps``)."""
    return x / torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp(min=eps)


def resize_normals(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """LANCZOS resize of unit normals [B, 3, h, w] to ``size`` (H, W), as the release's wrapper, renormalised."""
    if tuple(x.shape[2:]) != tuple(size):
        x = lanczos_resize(x, size)
    return normalize_channels(x)


def lanczos_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Pillow's LANCZOS (3 lobes, antialiased when shrinking) on float planes: [B, C, h, w] -> [B, C, H, W]."""
    planes = x.detach().float().cpu().numpy()  # [B, C, h, w]
    out = np.empty((*planes.shape[:2], *size), np.float32)  # [B, C, H, W]
    for b, c in np.ndindex(*planes.shape[:2]):
        pil = Image.fromarray(np.ascontiguousarray(planes[b, c]))  # float32 -> mode "F"
        out[b, c] = np.asarray(pil.resize((size[1], size[0]), Image.Resampling.LANCZOS))
    return torch.from_numpy(out).to(x.device, x.dtype)
