"""Where the input picture comes from: a file, an image datablock, or the active reference-image empty."""

from __future__ import annotations

import contextlib
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import bpy
import numpy as np

from . import mesh_builder
from .files import FileRefused, read_regular_file
from .settings import image_name_from_path
from .view_objects import Background


class SourceProblem(Exception):
    """The chosen source gives no usable picture; the message says what to do."""


@dataclass
class Picture:
    name: str
    data: bytes
    "The encoded image file (PNG, JPEG, ...)."
    reference: Any = None
    "The reference-image empty it came from, if any (the result is placed over its picture)."
    image: Any = None
    "The image datablock it came from, if any (the view camera's background)."
    path: str = ""
    "The image file it came from, if any (the view camera's background)."


def placement_for(scene: Any, picture: Picture) -> mesh_builder.Placement:
    """Over (or, without a result camera, beside) the reference empty; else at the 3D cursor, with a view
    camera whose background is the picture."""
    if picture.reference is not None:
        return mesh_builder.Placement.beside(picture.reference)
    image = picture.image.name if picture.image is not None else ""
    return mesh_builder.Placement.at_cursor(scene, view=Background(image=image, path=picture.path))


def reference_empty(context: Any) -> Any:
    """The active object if it is an empty that shows an image, else None."""
    return as_reference_empty(getattr(context, "active_object", None))


def as_reference_empty(obj: Any) -> Any:
    """``obj`` if it is an empty that shows an image, else None."""
    if obj is not None and obj.type == "EMPTY" and obj.empty_display_type == "IMAGE" and obj.data is not None:
        return obj
    return None


MAX_FILE_BYTES = 60 << 20
"Largest image file sent (one request frame carries at most 64 MiB)."
MAX_PIXELS = 100_000_000
"As the backend: larger images are refused before their pixels are read."

READABLE_FORMATS = ("PNG", "JPEG", "BMP", "TARGA", "WEBP")
"Formats whose files the backend decodes itself; other images (EXR, HDR, ...) go as a PNG of their pixels."


def picture_from_file(path: str) -> Picture:
    """The encoded bytes of an image file; only regular files are read, never more than ``MAX_FILE_BYTES``."""
    full = bpy.path.abspath(path) if path else ""
    if not full:
        raise SourceProblem("Choose an image file first.")
    try:
        data = read_regular_file(full, MAX_FILE_BYTES)
    except IsADirectoryError:
        raise SourceProblem(f"This is a folder, not an image file: {full}") from None
    except FileNotFoundError:
        raise SourceProblem(f"Image file not found: {full}") from None
    except FileRefused as exc:
        raise SourceProblem(f"{exc} Choose an image file (PNG or JPEG): {full}") from None
    except OSError as exc:
        raise SourceProblem(f"Cannot read the image file ({exc.strerror or exc}): {full}. "
                            "Check its permissions.") from None
    if not data:
        raise SourceProblem(f"The image file is empty (0 bytes): {full}")
    return Picture(image_name_from_path(full), data, path=full)


def mask_from_file(path: str) -> bytes | None:
    """The optional mask image's file bytes (None without a path); problems say it is the mask."""
    if not path:
        return None
    try:
        return picture_from_file(path).data
    except SourceProblem as exc:
        raise SourceProblem(f"Mask: {exc}") from None


def picture_from_image(image: Any) -> Picture:
    """The encoded bytes of an image datablock (packed data, its file, or a PNG of its pixels).

    The file is sent as it is only when the image is unchanged since loading and in a format the backend
    reads; otherwise its current pixels are encoded (the datablock itself is left untouched).
    """
    if image is None:
        raise SourceProblem("Choose an image first.")
    name = image_name_from_path(image.name)
    if image.source == "FILE" and not image.is_dirty and image.file_format in READABLE_FORMATS:
        if image.packed_file is not None:
            return Picture(name, bytes(image.packed_file.data), image=image)
        path = bpy.path.abspath(image.filepath, library=image.library) if image.filepath else ""
        if path:
            with contextlib.suppress(OSError, FileRefused):  # unreadable: Blender may still hold its pixels
                data = read_regular_file(path, MAX_FILE_BYTES)
                if data:
                    return Picture(name, data, image=image)
    return Picture(name, _encode_pixels(image), image=image)


def _encode_pixels(image: Any) -> bytes:
    """The image's current pixels as an 8-bit RGBA PNG (the datablock itself is left untouched)."""
    width, height = int(image.size[0]), int(image.size[1])  # reading the size loads the pixels
    if width == 0 or height == 0 or not image.has_data:
        missing = f" (its file is missing or unreadable: {image.filepath})" if image.filepath else ""
        raise SourceProblem(f"Image '{image.name}' has no pixels{missing}. Reload or replace it.")
    if width * height > MAX_PIXELS:
        raise SourceProblem(f"Image '{image.name}' is {width}x{height} pixels, over the limit of "
                            f"{MAX_PIXELS // 1_000_000} megapixels. Scale it down first.")
    flat = np.empty(width * height * 4, dtype=np.float32)
    image.pixels.foreach_get(flat)
    rgba = flat.reshape(height, width, 4)[::-1]  # [H, W, 4], top row first
    if image.is_float:
        rgba = _float_to_display(rgba, image.alpha_mode, image.colorspace_settings.name)
    return encode_png((np.clip(rgba, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))


def _float_to_display(rgba: np.ndarray, alpha_mode: str, colorspace: str) -> np.ndarray:
    """Blender's float buffers [H, W, 4]: premultiplied, linear -> straight alpha, sRGB-encoded colours."""
    rgb, alpha = rgba[..., :3], rgba[..., 3:]  # [H, W, 3], [H, W, 1]
    if alpha_mode not in ("CHANNEL_PACKED", "NONE"):
        rgb = np.where(alpha > 0.0, rgb / np.maximum(alpha, 1e-8), 0.0)
    if colorspace != "Non-Color":
        rgb = np.clip(rgb, 0.0, 1.0)
        rgb = np.where(rgb <= 0.0031308, 12.92 * rgb, 1.055 * np.power(rgb, 1 / 2.4) - 0.055)
    return np.concatenate([rgb, alpha], axis=-1).astype(np.float32)


def encode_png(rgba: np.ndarray) -> bytes:
    """A PNG file from uint8 RGBA pixels [H, W, 4], top row first."""
    height, width = rgba.shape[:2]
    rows = np.concatenate([np.zeros((height, 1), np.uint8), rgba.reshape(height, width * 4)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA, no interlace
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
            + chunk(b"IEND", b""))


def picture_from_context(context: Any, props: Any) -> Picture:
    """The picture the panel's source settings point at."""
    if props.source == "IMAGE":
        return picture_from_image(props.image)
    if props.source == "EMPTY":
        empty = reference_empty(context)
        if empty is None:
            raise SourceProblem("Make a reference-image empty (Add > Image > Reference) the active object.")
        picture = picture_from_image(empty.data)
        picture.reference, picture.image = empty, None
        return picture
    return picture_from_file(props.image_path)
