"""Safe image decoding: size limits checked before decoding, odd modes normalised to float RGBA."""

from __future__ import annotations

import io
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import BadInput

MAX_SIDE = 16384
MAX_PIXELS = 100_000_000
MAX_FILE_BYTES = 512 << 20


@dataclass
class LoadedImage:
    """An image as float RGBA in [0, 1], top row first, and whether it had a real alpha channel."""

    rgba: np.ndarray  # [H, W, 4] float32
    has_alpha: bool
    source_mode: str
    mask_given: bool = False
    "The alpha is a mask image the user gave (``apply_mask``), which the ``mask`` parameter never overrides."


def read_image_bytes(path: str) -> bytes:
    """Read an image file from disk with a readable error for missing, unreadable or huge files."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise BadInput(f"Image file is too large ({size >> 20} MiB): {path}",
                           hint=f"Use a file under {MAX_FILE_BYTES >> 20} MiB.")
        return p.read_bytes()
    except FileNotFoundError:
        raise BadInput(f"Image file not found: {path}", hint="Check the path; it is read by the backend.") from None
    except IsADirectoryError:
        raise BadInput(f"Image path is a folder, not a file: {path}", hint="Choose an image file.") from None
    except PermissionError:
        raise BadInput(f"No permission to read the image: {path}", hint="Check the file's permissions.") from None
    except OSError as exc:
        raise BadInput(f"Cannot read the image {path}: {exc.strerror or exc}", hint="Check the path.") from None


def decode_image(data: bytes, name: str = "image") -> LoadedImage:
    """Decode encoded image bytes; refuse over-large images before any pixel is decoded."""
    from PIL import Image

    if not data:
        raise BadInput(f"The image '{name}' is empty (0 bytes).", hint="Choose a valid PNG or JPEG file.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            _check_size(img.size, name)
            img.load()
    except BadInput:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadInput(f"The image '{name}' is over the limit of {MAX_PIXELS // 1_000_000} megapixels "
                       "(refused before decoding).", hint="Downscale it first.") from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        raise BadInput(f"Cannot decode the image '{name}': {exc}",
                       hint="The file is damaged or not an image Pillow can read; re-save it as PNG.") from None
    _check_size(img.size, name)
    rgba, has_alpha = _to_rgba(img)
    return LoadedImage(rgba, has_alpha, img.mode)


def load_image(path: str) -> LoadedImage:
    """Read and decode an image file."""
    return decode_image(read_image_bytes(path), os.path.basename(path) or path)


def _check_size(size: tuple[int, int], name: str) -> None:
    w, h = size
    if w < 2 or h < 2:
        raise BadInput(f"The image '{name}' is {w}x{h} pixels, too small to use.",
                       hint="Use an image at least 16 pixels on each side.")
    if w > MAX_SIDE or h > MAX_SIDE or w * h > MAX_PIXELS:
        raise BadInput(f"The image '{name}' is {w}x{h} pixels, over the limit of {MAX_SIDE} px a side "
                       f"and {MAX_PIXELS // 1_000_000} megapixels.", hint="Downscale it first.")


def _to_rgba(img: "Image.Image") -> tuple[np.ndarray, bool]:  # noqa: F821
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        grey = np.asarray(img, dtype=np.float32)
        top = 65535.0 if mode.startswith("I") and grey.max(initial=0) > 255 else 255.0
        grey = np.clip(grey / (1.0 if mode == "F" else top), 0.0, 1.0)
        return np.dstack([grey, grey, grey, np.ones_like(grey)]), False
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in img.info)
    rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
    if has_alpha and rgba[..., 3].min() >= 1.0:
        has_alpha = False  # an opaque alpha channel carries no mask
    return np.ascontiguousarray(rgba), has_alpha


def apply_mask(image: LoadedImage, mask: LoadedImage) -> LoadedImage:
    """``image`` with ``mask`` as its alpha: the mask's own alpha when it has one, else its brightness
    (white = object). A mask of another size is resized to the image (bilinear)."""
    from PIL import Image

    m = mask.rgba[..., 3] if mask.has_alpha else mask.rgba[..., :3].mean(axis=-1)  # [h, w] in [0, 1]
    h, w = image.rgba.shape[:2]
    if m.shape != (h, w):
        m = np.asarray(Image.fromarray(m.astype(np.float32)).resize((w, h), Image.Resampling.BILINEAR))
    if not (m > 0.5).any():
        raise BadInput("The mask image marks no pixel as the object.",
                       hint="White (or opaque) pixels mark the object; black (or transparent) the background.")
    rgba = image.rgba.copy()
    rgba[..., 3] = np.clip(m, 0.0, 1.0)
    return LoadedImage(rgba, True, image.source_mode, mask_given=True)

