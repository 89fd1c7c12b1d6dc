"""Safe image reading and decoding.

Only regular files are read, never more than ``MAX_FILE_BYTES``; only the formats in ``ACCEPTED_FORMATS``
are decoded (none of their Pillow plug-ins runs an external program, unlike EPS's Ghostscript); the size
limits are checked on the header before any pixel is decoded; EXIF orientation is applied; every mode and
bit depth comes out as float RGBA in [0, 1].
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .errors import BadInput

if TYPE_CHECKING:
    from PIL import Image

MIN_SIDE = 16
MAX_SIDE = 16384
MAX_PIXELS = 100_000_000
MAX_FILE_BYTES = 512 << 20
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "TGA")
"Pillow formats decoded, in the order tried (TGA has no signature, so it comes last)."
ACCEPTED_TEXT = "PNG, JPEG, WebP, BMP, TIFF or TGA"
OPAQUE_SHARE = 0.99
"An alpha channel opaque (above 0.5) on more than this share of the pixels carries no mask."
_READ_CHUNK = 8 << 20
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError, TypeError,
                  ZeroDivisionError, KeyError)
"What Pillow raises on damaged files (UnidentifiedImageError is an OSError)."

_SIGNATURES = (  # (test on the first bytes, what the file is) for files we recognise but do not decode
    (lambda b: b.startswith((b"%!PS", b"\xc5\xd0\xd3\xc6")), "an EPS/PostScript file"),
    (lambda b: b.startswith(b"%PDF"), "a PDF document"),
    (lambda b: b.startswith(b"\x76\x2f\x31\x01"), "an OpenEXR image"),
    (lambda b: b.startswith((b"#?RADIANCE", b"#?RGBE")), "a Radiance HDR image"),
    (lambda b: b.startswith((b"GIF87a", b"GIF89a")), "a GIF image"),
    (lambda b: b.startswith(b"8BPS"), "a Photoshop document"),
    (lambda b: b[4:12] in (b"ftypavif", b"ftypheic", b"ftypheix", b"ftypmif1"), "an AVIF/HEIF image"),
    (lambda b: b.startswith((b"\x00\x00\x00\x0cjP  ", b"\xff\x4f\xff\x51")), "a JPEG 2000 image"),
    (lambda b: b.lstrip().startswith((b"<?xml", b"<svg")), "an SVG or XML file"),
)
_ACCEPTED_SIGNATURES = (  # files that claim an accepted format (to explain a variant Pillow cannot read)
    (lambda b: b.startswith(b"\x89PNG\r\n\x1a\n"), "PNG"),
    (lambda b: b.startswith(b"\xff\xd8\xff"), "JPEG"),
    (lambda b: b.startswith(b"RIFF") and b[8:12] == b"WEBP", "WebP"),
    (lambda b: b.startswith(b"BM"), "BMP"),
    (lambda b: b.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")), "TIFF"),
)
EXR_HINT = ("The backend does not read OpenEXR: in Blender load it as an image and choose that image as the "
            "source (the add-on sends its pixels), or save it as a 16-bit PNG or TIFF.")


@dataclass
class LoadedImage:
    """An image as float RGBA in [0, 1], top row first, and whether it had a real alpha channel."""

    rgba: np.ndarray  # [H, W, 4] float32
    has_alpha: bool
    source_mode: str
    mask_given: bool = False
    "The alpha is a mask image the user gave (``apply_mask``), which the ``mask`` parameter never overrides."
    alpha_ignored: bool = False
    "The file had an alpha channel that carries no mask (opaque nearly everywhere): kept in ``rgba``, not used."


# ------------------------------------------------------------------------------------------- files


def read_image_bytes(path: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of the regular file ``path`` (at most ``limit``), with a readable error otherwise.

    Pipes, devices and sockets are refused before opening, and again on the opened descriptor (opened
    non-blocking, so a path swapped for a pipe in between cannot block); at most ``limit + 1`` bytes are
    ever read, so a file that grows while read cannot exhaust memory.
    """
    try:
        _require_regular(os.stat(path), path)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
                     | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0))
        try:
            info = os.fstat(fd)
            _require_regular(info, path)
            _require_small(info.st_size, limit, path)
            data = _read_at_most(fd, limit + 1)
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise BadInput(f"Image file not found: {path}", hint="Check the path; it is read by the backend.") from None
    except IsADirectoryError:
        raise BadInput(f"Image path is a folder, not a file: {path}", hint="Choose an image file.") from None
    except PermissionError:
        raise BadInput(f"No permission to read the image: {path}", hint="Check the file's permissions.") from None
    except ValueError:  # an embedded NUL character
        raise BadInput(f"The image path contains a NUL character: {path!r}", hint="Check the path.") from None
    except OSError as exc:
        raise BadInput(f"Cannot read the image {path}: {exc.strerror or exc}", hint="Check the path.") from None
    _require_small(len(data), limit, path)
    return data


def _require_regular(info: os.stat_result, path: str) -> None:
    mode = info.st_mode
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(path)
    if not stat.S_ISREG(mode):
        kind = ("a named pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a plain file")
        raise BadInput(f"Image path is {kind}, not a regular file: {path}",
                       hint="Choose an image file; pipes, devices and sockets are not read.")


def _require_small(size: int, limit: int, path: str) -> None:
    if size > limit:
        raise BadInput(f"Image file is too large (over {limit >> 20} MiB): {path}",
                       hint=f"Use a file under {limit >> 20} MiB.")


def _read_at_most(fd: int, count: int) -> bytes:
    chunks: list[bytes] = []
    left = count
    while left > 0:
        chunk = os.read(fd, min(left, _READ_CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# ------------------------------------------------------------------------------------------- decoding


def decode_image(data: bytes, name: str = "image") -> LoadedImage:
    """Decode encoded image bytes in an accepted format; refuse over-large images before decoding pixels."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise BadInput(f"The image '{name}' is empty (0 bytes).", hint="Choose a valid PNG or JPEG file.")
    _refuse_other_formats(data, name)
    try:
        with _pillow_limit_lifted():
            img = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
        _check_size(img.size, name)
        img.load()
    except BadInput:
        raise
    except UnidentifiedImageError:
        raise _unidentified(data, name) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadInput(f"The image '{name}' is over the limit of {MAX_PIXELS // 1_000_000} megapixels "
                       "(refused before decoding).", hint="Downscale it first.") from None
    except _DECODE_ERRORS as exc:
        raise BadInput(f"Cannot decode the image '{name}': {_prose(exc)}",
                       hint="The file is damaged or not an image Pillow can read; re-save it as PNG.") from None
    _check_size(img.size, name)
    with contextlib.suppress(*_DECODE_ERRORS):  # unreadable EXIF: the pixels as stored
        ImageOps.exif_transpose(img, in_place=True)  # a phone photo comes out as it was held
    rgba, has_alpha = _to_rgba(img, name)
    ignored = has_alpha and not alpha_carries_mask(rgba[..., 3])  # e.g. a photo saved as RGBA
    return LoadedImage(rgba, has_alpha and not ignored, img.mode, alpha_ignored=ignored)


def alpha_carries_mask(alpha: np.ndarray) -> bool:
    """True when alpha [H, W] separates something: at most ``OPAQUE_SHARE`` of its pixels are opaque.

    An alpha that is opaque nearly everywhere (a photo saved as RGBA, a render whose background is 254/255
    opaque, a stray transparent corner) would make the whole frame the object, so it counts as absent.
    """
    return np.count_nonzero(alpha > 0.5) <= OPAQUE_SHARE * alpha.size


def load_image(path: str) -> LoadedImage:
    """Read and decode an image file."""
    return decode_image(read_image_bytes(path), os.path.basename(path) or path)


@contextlib.contextmanager
def _pillow_limit_lifted() -> Iterator[None]:
    """Pillow's own pixel limit off while a header is read: ``_check_size`` decides, with our message."""
    from PIL import Image

    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _refuse_other_formats(data: bytes, name: str) -> None:
    head = data[:64]
    for test, what in _SIGNATURES:
        if test(head):
            hint = EXR_HINT if "OpenEXR" in what else f"Save it as {ACCEPTED_TEXT}."
            raise BadInput(f"The image '{name}' is {what}, which is not read (accepted: {ACCEPTED_TEXT}).",
                           hint=hint)


def _unidentified(data: bytes, name: str) -> BadInput:
    claimed = next((fmt for test, fmt in _ACCEPTED_SIGNATURES if test(data[:16])), None)
    if claimed is not None:
        return BadInput(f"Cannot decode the image '{name}': a {claimed} file of an unsupported kind "
                        "(for example floating-point colour) or damaged.",
                        hint="Re-save it as an 8- or 16-bit PNG.")
    return BadInput(f"Cannot decode the image '{name}': not an image in an accepted format ({ACCEPTED_TEXT}).",
                    hint="Choose an image file, or re-save it as PNG.")


def _prose(exc: BaseException) -> str:
    """An exception as a sentence: object reprs such as ``<_io.BytesIO object at 0x..>`` are dropped."""
    text = re.sub(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>", "", str(exc)).strip()
    return text or type(exc).__name__


def _check_size(size: tuple[int, int], name: str) -> None:
    w, h = size
    if w < MIN_SIDE or h < MIN_SIDE:
        raise BadInput(f"The image '{name}' is {w}x{h} pixels, too small to use.",
                       hint=f"Use an image at least {MIN_SIDE} pixels on each side.")
    if w > MAX_SIDE or h > MAX_SIDE or w * h > MAX_PIXELS:
        raise BadInput(f"The image '{name}' is {w}x{h} pixels, over the limit of {MAX_SIDE} px a side "
                       f"and {MAX_PIXELS // 1_000_000} megapixels.", hint="Downscale it first.")


# ------------------------------------------------------------------------------------------- modes


def _to_rgba(img: Image.Image, name: str) -> tuple[np.ndarray, bool]:
    """Float RGBA [H, W, 4] in [0, 1] of any mode, and whether the mode has an alpha channel."""
    mode = img.mode
    if mode == "F" or mode.startswith("I"):
        grey = np.asarray(img, dtype=np.float32)  # [H, W]
        if mode == "F":
            _require_finite(grey, name)
        else:
            grey = grey / np.float32(_integer_top(img))
        grey = np.clip(grey, 0.0, 1.0)
        return np.dstack([grey, grey, grey, np.ones_like(grey)]), False
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in img.info)
    if mode == "La":
        img = img.convert("LA")  # Pillow converts premultiplied grey only to straight grey
    rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)  # [H, W, 4] 0..255
    rgba *= np.float32(1.0 / 255.0)
    return np.ascontiguousarray(rgba), has_alpha


def _integer_top(img: Image.Image) -> int:
    """White of an integer greyscale mode: its bit depth decides, never the pixels' values."""
    if img.mode.startswith("I;16"):
        return 65535
    tags = getattr(img, "tag_v2", None)  # TIFF: BitsPerSample (258), SampleFormat (339, 2 = signed)
    if tags is not None:
        bits = tags.get(258, (16,))
        signed = tags.get(339, (1,))
        bits = bits[0] if isinstance(bits, tuple) else bits
        signed = (signed[0] if isinstance(signed, tuple) else signed) == 2
        return (1 << (int(bits) - int(signed))) - 1
    return 65535  # PNG's deepest integer greyscale


def _require_finite(grey: np.ndarray, name: str) -> None:
    bad = int(np.count_nonzero(~np.isfinite(grey)))
    if bad:
        raise BadInput(f"The image '{name}' has {bad} pixels that are not numbers (NaN or infinite).",
                       hint="Replace them (for example by 0) and save it again; such images are refused, "
                            "not guessed at.")


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

