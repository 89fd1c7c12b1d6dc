"""Geometry-stage image preprocessing, as the release's ``Hi3DGenPipeline.preprocess_image`` does it.

1. Alpha: the image's own when it is RGBA and not fully opaque; otherwise (release: BiRefNet) a foreground
   estimate (``backend.nirne.segmentation``), made binary 0/255, after downscaling to 1024 px at most.
2. Crop: bbox of ``alpha > 0.8 * 255``; ``size = int(max(w, h) * 1.2)`` centred on the bbox; the box
   ``(cx - size//2, cy - size//2, cx + size//2, cy + size//2)`` truncated to ints and clamped to the image.
3. Pad the crop to a square with transparent black, the offset ``(long - short) // 2`` on top or left.
4. Resize to ``resolution`` x ``resolution`` with LANCZOS (518 by default; the app uses 1024).
5. Premultiply: ``RGB = RGB * alpha`` in float, back to uint8 (truncating). Returns RGBA uint8.

Before DINOv2 the release turns the normal map into an RGB image on white and resizes it to 518 with
LANCZOS: ``condition_image``. A user's normal map with alpha is resized as RGBA, which Pillow does
premultiplied (as the release's ``encode_image`` resizes any RGBA image), and its colours reach the
condition image as they are: ``given_colors``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .errors import BadInput
from .images import LoadedImage
from .mask_report import MaskReport
from .nirne.segmentation import Matting

ALPHA_BBOX_THRESHOLD = 0.8 * 255
"Pixels with alpha above this define the object's bounding box."
MARGIN = 1.2
"The crop is this many times the bbox's long side."
SEGMENT_MAX_SIDE = 1024
"Alpha-less images are downscaled to this long side before segmentation, as the release."
FLAT_COLOR = (128, 128, 255)
"The flat normal (+Z) as a colour."


@dataclass(frozen=True)
class SquareCrop:
    """Where the object's square crop lies in the source image and where it lands in the padded square."""

    box: tuple[int, int, int, int]
    "(left, top, right, bottom) in source pixels, clamped to the image."
    side: int
    "Side of the padded square before resizing."
    offset: tuple[int, int]
    "(x, y) of the crop inside the padded square."


def square_crop(alpha: np.ndarray) -> SquareCrop:
    """The release's crop geometry for uint8 alpha [H, W]; ``BadInput`` when no pixel is opaque enough."""
    rows, cols = np.nonzero(alpha > ALPHA_BBOX_THRESHOLD)
    if len(rows) == 0:
        raise BadInput("No foreground object was found in the image.",
                       hint="Use an image with a transparent background, or a plain one around the object.")
    x0, y0, x1, y1 = int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max())
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    size = int(max(x1 - x0, y1 - y0) * MARGIN)
    height, width = alpha.shape
    left, top = max(0, int(cx - size // 2)), max(0, int(cy - size // 2))
    right, bottom = min(width, int(cx + size // 2)), min(height, int(cy + size // 2))
    w, h = right - left, bottom - top
    side = max(w, h)
    offset = (0, (w - h) // 2) if w > h else ((h - w) // 2, 0)
    return SquareCrop((left, top, right, bottom), side, offset)


def apply_crop(image: Image.Image, crop: SquareCrop, resolution: int,
               fill: tuple[int, ...] = (0, 0, 0, 0)) -> Image.Image:
    """Crop ``image``, paste it into a square filled with ``fill``, LANCZOS-resize to ``resolution``."""
    square = Image.new(image.mode, (crop.side, crop.side), fill)
    square.paste(image.crop(crop.box), crop.offset)
    return square.resize((resolution, resolution), Image.Resampling.LANCZOS)


def premultiply(rgba: np.ndarray) -> np.ndarray:
    """uint8 RGBA [H, W, 4] -> the same with RGB multiplied by alpha (float, then truncated to uint8)."""
    x = rgba.astype(np.float32) / 255.0
    x[..., :3] *= x[..., 3:4]
    return (x * 255.0).astype(np.uint8)


def preprocess_image(rgba: np.ndarray, resolution: int = 518) -> np.ndarray:
    """uint8 RGBA [H, W, 4] with a meaningful alpha -> cropped, padded, resized, premultiplied [R, R, 4]."""
    return preprocess_with_crop(rgba, resolution)[0]


def preprocess_with_crop(rgba: np.ndarray, resolution: int) -> tuple[np.ndarray, SquareCrop]:
    """``preprocess_image`` and the crop it used."""
    crop = square_crop(rgba[..., 3])
    return premultiply(np.asarray(apply_crop(Image.fromarray(rgba), crop, resolution))), crop


def object_rgba(image: LoadedImage, matting: Matting | None = None) -> np.ndarray:
    """uint8 RGBA of ``image`` whose alpha separates the object (own alpha, else ``matting`` when given,
    else a binary estimate)."""
    return object_rgba_reported(image, matting)[0]


def object_rgba_reported(image: LoadedImage, matting: Matting | None = None) -> tuple[np.ndarray, MaskReport]:
    """``object_rgba`` and the report of its mask (source, coverage, confidence, warning)."""
    from .mask_report import report_mask
    from .nirne.segmentation import foreground_mask
    from .relief.mask import estimate

    rgba = np.clip(image.rgba * 255.0 + 0.5, 0, 255).astype(np.uint8)  # [H, W, 4]
    if image.has_alpha:
        return rgba, report_mask(rgba[..., 3] > 128, "given" if image.mask_given else "alpha")
    h, w = rgba.shape[:2]
    if max(h, w) > SEGMENT_MAX_SIDE:
        scale = SEGMENT_MAX_SIDE / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        rgba = np.asarray(Image.fromarray(rgba).resize(size, Image.Resampling.LANCZOS)).copy()
    rgb = rgba[..., :3].astype(np.float32) / 255.0
    if matting:
        mask = foreground_mask(rgb, method="learned", matting=matting)
        report = report_mask(mask, "learned", alpha_ignored=image.alpha_ignored)
    else:
        found = estimate(rgb)
        mask = found.mask
        report = report_mask(mask, "estimated", found.confidence, image.alpha_ignored)
    rgba[..., 3] = np.where(mask, 255, 0)
    return rgba, report


@dataclass(frozen=True)
class CropFrame:
    """Where a square crop came from: the crop, the size it was cut from and the input's size (W, H)."""

    crop: SquareCrop
    work_size: tuple[int, int]
    "The image the crop was cut from (alpha-less inputs are downscaled for segmentation first)."
    input_size: tuple[int, int]
    mask: MaskReport | None = None
    "Where the object's mask came from, how much of the image it covers, and any warning."


def square_crop_rgba(image: LoadedImage, resolution: int = 1024,
                     matting: Matting | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A decoded image -> (float RGBA [R, R, 4] in [0, 1], premultiplied; bool mask [R, R]) as the app does.

    The mask is ``alpha > 128/255``, the normal predictor's test.
    """
    rgba, mask, _ = square_crop_with_frame(image, resolution, matting)
    return rgba, mask


def square_crop_with_frame(image: LoadedImage, resolution: int = 1024, matting: Matting | None = None
                           ) -> tuple[np.ndarray, np.ndarray, CropFrame]:
    """``square_crop_rgba`` plus the ``CropFrame`` that ``uncrop_normals`` needs to undo it."""
    source, report = object_rgba_reported(image, matting)
    out, crop = preprocess_with_crop(source, resolution)
    mask = out[..., 3] > 128
    if not mask.any():
        raise BadInput("The object vanished after cropping (its alpha is too faint).",
                       hint="Use an image whose object is clearly opaque.")
    height, width = image.rgba.shape[:2]
    frame = CropFrame(crop, (source.shape[1], source.shape[0]), (width, height), report)
    return out.astype(np.float32) / 255.0, mask, frame


def uncrop_normals(normals: np.ndarray, mask: np.ndarray, frame: CropFrame) -> tuple[np.ndarray, np.ndarray]:
    """Normals [R, R, 3] and mask [R, R] of a square crop -> the same at the input's size (flat outside)."""
    crop = frame.crop
    side = (crop.side, crop.side)
    square_n = np.stack([_resize_plane(normals[..., c], side, Image.Resampling.BILINEAR) for c in range(3)], -1)
    square_m = _resize_plane(mask.astype(np.float32), side, Image.Resampling.NEAREST) > 0.5
    left, top, right, bottom = crop.box
    ox, oy = crop.offset
    work_w, work_h = frame.work_size
    out_n = np.zeros((work_h, work_w, 3), np.float32)
    out_n[..., 2] = 1.0
    out_m = np.zeros((work_h, work_w), bool)
    out_n[top:bottom, left:right] = square_n[oy:oy + bottom - top, ox:ox + right - left]
    out_m[top:bottom, left:right] = square_m[oy:oy + bottom - top, ox:ox + right - left]
    if frame.work_size != frame.input_size:
        out_n = np.stack([_resize_plane(out_n[..., c], frame.input_size[::-1], Image.Resampling.BILINEAR)
                          for c in range(3)], -1)
        out_m = _resize_plane(out_m.astype(np.float32), frame.input_size[::-1], Image.Resampling.NEAREST) > 0.5
    out_n /= np.maximum(np.linalg.norm(out_n, axis=-1, keepdims=True), 1e-8)
    out_n[~out_m] = (0.0, 0.0, 1.0)
    return out_n.astype(np.float32), out_m


def _resize_plane(plane: np.ndarray, shape: tuple[int, int], method: Image.Resampling) -> np.ndarray:
    """Resize a float [H, W] array to ``shape`` (H, W) with Pillow."""
    pil = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32))  # float32 -> mode "F"
    return np.asarray(pil.resize((shape[1], shape[0]), method), dtype=np.float32)


def given_normals(normal_map: LoadedImage, frame: CropFrame, shape: tuple[int, int]) -> np.ndarray:
    """A user's normal map (OpenGL colours, framed like the image) -> unit normals [H, W, 3] in the crop."""
    from .normalmap import from_colors

    return from_colors(given_colors(normal_map, frame, shape).astype(np.float32) / 255.0)


def given_colors(normal_map: LoadedImage, frame: CropFrame, shape: tuple[int, int]) -> np.ndarray:
    """A user's normal map -> its uint8 RGB colours [H, W, 3] in the image's crop (``frame``).

    A map with alpha is resized as an RGBA image, as the release's ``encode_image`` resizes one: Pillow
    premultiplies by alpha, resamples and divides again, so colours under transparent pixels never bleed into
    the silhouette; its padding is transparent, and pixels left with zero alpha (nothing to divide by) get the
    flat normal. An opaque map's padding is the flat normal. The background rule (white outside the mask)
    comes after, in ``condition_image``, which takes these colours as they are (no renormalisation).
    """
    if shape[0] != shape[1]:
        raise BadInput(f"Normals are produced on a square crop, not {shape}.", hint="Ask for a square shape.")
    channels = 4 if normal_map.has_alpha else 3
    colors = np.clip(normal_map.rgba[..., :channels] * 255.0 + 0.5, 0, 255).astype(np.uint8)  # [H, W, C]
    pil = Image.fromarray(colors)  # RGBA resizes premultiplied (Pillow converts to RGBa and back)
    if pil.size != frame.work_size:
        pil = pil.resize(frame.work_size, Image.Resampling.BICUBIC)
    fill = (0, 0, 0, 0) if channels == 4 else FLAT_COLOR
    cropped = np.asarray(apply_crop(pil, frame.crop, shape[0], fill=fill))  # [R, R, C]
    rgb = cropped[..., :3].copy()
    if channels == 4:
        rgb[cropped[..., 3] == 0] = FLAT_COLOR
    return rgb


def normal_colors(normals: np.ndarray) -> np.ndarray:
    """Unit normals [H, W, 3] -> uint8 colours ``(n + 1) / 2 * 255``, truncated as the release's predictor."""
    return ((np.clip(normals, -1.0, 1.0) + 1.0) * 0.5 * 255.0).astype(np.uint8)


def normal_map_on_white(normals: np.ndarray, mask: np.ndarray, colors: np.ndarray | None = None) -> np.ndarray:
    """Unit normals [H, W, 3] (or their uint8 ``colors``) + mask -> uint8 RGB as the release's predictor
    returns it: background white (the release sets background normals to (1, 1, 1))."""
    out = normal_colors(normals) if colors is None else colors.copy()
    out[~mask] = 255
    return out


def condition_image(normals: np.ndarray, mask: np.ndarray, size: int = 518,
                    colors: np.ndarray | None = None) -> np.ndarray:
    """The image DINOv2 sees: the normal map on white, LANCZOS-resized to ``size`` x ``size`` (uint8 RGB).

    ``colors`` (uint8 [H, W, 3], from ``given_colors``) replace the normals' colours when a user gave the map.
    """
    pil = Image.fromarray(normal_map_on_white(normals, mask, colors))
    return np.asarray(pil.resize((size, size), Image.Resampling.LANCZOS))
