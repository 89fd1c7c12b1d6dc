"""Geometry-stage preprocessing as the release: crop geometry, padding, resize, premultiply, DINO input."""

from __future__ import annotations

import numpy as np
import pytest

from backend.errors import BadInput
from backend.images import LoadedImage
from backend.preprocess import (
    condition_image,
    given_colors,
    given_normals,
    normal_map_on_white,
    premultiply,
    preprocess_image,
    square_crop,
    square_crop_rgba,
    square_crop_with_frame,
)


def _rect_rgba(h: int, w: int, rows: slice, cols: slice,
               color: tuple[int, int, int] = (200, 100, 50)) -> np.ndarray:
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[rows, cols, :3] = color
    rgba[rows, cols, 3] = 255
    return rgba


def test_crop_geometry_by_hand() -> None:
    alpha = _rect_rgba(80, 100, slice(20, 60), slice(10, 30))[..., 3]
    crop = square_crop(alpha)
    # bbox x 10..29, y 20..59: centre (19.5, 39.5), size int(39 * 1.2) = 46, half 23
    # box (int(-3.5) -> 0 after clamping, int(16.5), int(42.5), int(62.5)) = (0, 16, 42, 62): 42 x 46
    assert crop.box == (0, 16, 42, 62)
    assert crop.side == 46 and crop.offset == (2, 0)


def test_crop_clamps_to_the_image() -> None:
    alpha = _rect_rgba(50, 50, slice(0, 50), slice(30, 50))[..., 3]  # touches three borders
    crop = square_crop(alpha)
    left, top, right, bottom = crop.box
    assert 0 <= left < right <= 50 and 0 <= top < bottom <= 50
    assert crop.side == max(right - left, bottom - top)


def test_faint_alpha_has_no_foreground() -> None:
    rgba = _rect_rgba(20, 20, slice(5, 15), slice(5, 15))
    rgba[..., 3] //= 2  # 127 < 0.8 * 255
    with pytest.raises(BadInput):
        preprocess_image(rgba)


def test_preprocess_centres_pads_resizes_and_premultiplies() -> None:
    rgba = _rect_rgba(120, 200, slice(30, 90), slice(20, 60))  # a 40 x 60 object off-centre
    out = preprocess_image(rgba, resolution=518)
    assert out.shape == (518, 518, 4) and out.dtype == np.uint8
    rows, cols = np.nonzero(out[..., 3] > 200)
    # centred up to the release's integer truncation (about one source pixel = 7.4 px here)
    assert abs((rows.min() + rows.max()) / 2 - 259) < 10 and abs((cols.min() + cols.max()) / 2 - 259) < 10
    assert abs((rows.max() - rows.min()) - 60 / 70 * 518) < 8  # 60 px of a square of int(59 * 1.2) = 70
    assert (out[..., :3] <= out[..., 3:4]).all()  # premultiplied colours never exceed alpha (all <= 255)
    assert (out[out[..., 3] == 0, :3] == 0).all()


def test_premultiply_truncates_like_the_release() -> None:
    px = np.array([[[200, 100, 51, 128]]], np.uint8)
    a = np.float32(128 / 255)
    want = (np.array([200, 100, 51], np.float32) / 255 * a * 255).astype(np.uint8)
    np.testing.assert_array_equal(premultiply(px)[0, 0, :3], want)
    assert premultiply(px)[0, 0, 3] == 128


def test_square_crop_rgba_with_alpha() -> None:
    rgba = _rect_rgba(60, 80, slice(10, 50), slice(20, 40)).astype(np.float32) / 255
    image = LoadedImage(rgba, has_alpha=True, source_mode="RGBA")
    out, mask = square_crop_rgba(image, resolution=64)
    assert out.shape == (64, 64, 4) and out.dtype == np.float32 and mask.shape == (64, 64)
    assert mask[32, 32] and not mask[0, 0]
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_square_crop_rgba_segments_images_without_alpha() -> None:
    rgba = np.ones((60, 80, 4), np.float32)  # white background, opaque
    rgba[15:45, 30:50, :3] = (0.1, 0.3, 0.8)
    image = LoadedImage(rgba, has_alpha=False, source_mode="RGB")
    out, mask = square_crop_rgba(image, resolution=64)
    assert mask[32, 32] and not mask[2, 2]
    assert set(np.unique(np.round(out[..., 3] * 255))) <= set(range(256))
    with pytest.raises(BadInput):
        square_crop_rgba(LoadedImage(np.zeros((10, 10, 4), np.float32), True, "RGBA"))


def test_given_normals_follow_the_image_crop() -> None:
    rgba = _rect_rgba(60, 80, slice(10, 50), slice(20, 40)).astype(np.float32) / 255
    image = LoadedImage(rgba, has_alpha=True, source_mode="RGBA")
    colors = np.zeros((30, 40, 4), np.float32)  # half-size map: resized to the image first
    colors[..., 3] = 1.0
    colors[..., :3] = (1.0, 0.5, 0.5)  # +X everywhere
    normal_map = LoadedImage(colors, has_alpha=False, source_mode="RGB")
    _, _, frame = square_crop_with_frame(image, resolution=64)
    normals = given_normals(normal_map, frame, (64, 64))  # exactly the image's crop
    assert normals.shape == (64, 64, 3)
    np.testing.assert_allclose(normals[32, 32], [1.0, 0.0, 0.0], atol=0.01)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=-1), 1.0, atol=1e-4)


def _dome_normal_map(h: int, w: int, alpha: np.ndarray) -> np.ndarray:
    """uint8 RGBA: a dome's normal colours where ``alpha`` > 0, red garbage under the transparent pixels."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    n = np.stack([(x - w / 2) / w, (h / 2 - y) / h, np.ones_like(x)], -1)  # [H, W, 3]
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    rgba = np.dstack([np.round((n + 1) * 127.5), alpha]).astype(np.uint8)  # [H, W, 4]
    rgba[alpha == 0, :3] = (255, 0, 0)
    return rgba


def _release_condition(normal_map: np.ndarray, crop, mask: np.ndarray) -> np.ndarray:
    """What the release's Pillow calls make of an RGBA map: crop, transparent padding, an RGBA LANCZOS resize
    (premultiplied inside Pillow), then the background rule (white outside the mask), then 518."""
    from PIL import Image

    left, top, right, bottom = crop.box
    ox, oy = crop.offset
    square = np.zeros((crop.side, crop.side, 4), np.uint8)  # transparent black, as the release pads
    square[oy:oy + bottom - top, ox:ox + right - left] = normal_map[top:bottom, left:right]
    rgb = np.asarray(Image.fromarray(square).resize(mask.shape[::-1], Image.Resampling.LANCZOS))[..., :3].copy()
    rgb[~mask] = 255
    return np.asarray(Image.fromarray(rgb).resize((518, 518), Image.Resampling.LANCZOS))


def test_rgba_normal_maps_are_resized_premultiplied_as_the_release() -> None:
    h, w = 60, 80
    yy, xx = np.mgrid[0:h, 0:w]
    alpha = np.clip((18.0 - np.hypot(yy - 30.0, (xx - 40.0) * 0.8)) * 128.0, 0, 255)  # a disc, 2 px soft edge
    image = LoadedImage(np.dstack([np.full((h, w, 3), 0.5), alpha / 255]).astype(np.float32), True, "RGBA")
    rgba, mask, frame = square_crop_with_frame(image, resolution=256)
    normal_map = _dome_normal_map(h, w, alpha.astype(np.uint8))
    given = LoadedImage(normal_map.astype(np.float32) / 255, has_alpha=True, source_mode="RGBA")
    colors = given_colors(given, frame, mask.shape)
    ours = condition_image(given_normals(given, frame, mask.shape), mask, colors=colors).astype(int)
    expected = _release_condition(normal_map, frame.crop, mask).astype(int)
    assert np.abs(ours - expected).max() <= 1
    opaque = LoadedImage(given.rgba.copy(), has_alpha=False, source_mode="RGB")  # alpha dropped: red bleeds in
    dropped = condition_image(given_normals(opaque, frame, mask.shape), mask,
                              colors=given_colors(opaque, frame, mask.shape)).astype(int)
    assert np.abs(dropped - expected).max() > 4


def test_condition_image_is_white_outside_and_518() -> None:
    normals = np.zeros((100, 100, 3), np.float32)
    normals[..., 2] = 1.0
    mask = np.zeros((100, 100), bool)
    mask[30:70, 30:70] = True
    rgb = normal_map_on_white(normals, mask)
    assert tuple(rgb[50, 50]) == (127, 127, 255) and tuple(rgb[0, 0]) == (255, 255, 255)
    cond = condition_image(normals, mask)
    assert cond.shape == (518, 518, 3) and cond.dtype == np.uint8
    assert tuple(cond[5, 5]) == (255, 255, 255)


def test_uncrop_puts_the_square_crop_back_at_the_input_size() -> None:
    from backend.preprocess import square_crop_with_frame, uncrop_normals

    h, w = 90, 140
    alpha = np.zeros((h, w), np.float32)
    alpha[20:70, 30:110] = 1.0
    rgba = np.dstack([np.full((h, w, 3), 0.5, np.float32), alpha])
    crop_rgba, mask, frame = square_crop_with_frame(LoadedImage(rgba, True, "RGBA"), resolution=64)
    tilt = np.zeros((64, 64, 3), np.float32)
    tilt[..., 0], tilt[..., 2] = 0.6, 0.8  # one tilted normal everywhere in the crop
    normals, full_mask = uncrop_normals(tilt, mask, frame)
    assert normals.shape == (h, w, 3) and full_mask.shape == (h, w)
    assert np.allclose(np.linalg.norm(normals, axis=-1), 1.0, atol=1e-5)
    inside = full_mask & (alpha > 0)
    assert inside.sum() > 0.9 * (alpha > 0).sum()  # the object's pixels come back where they were
    assert np.allclose(normals[inside], (0.6, 0.0, 0.8), atol=1e-3)
    assert np.allclose(normals[~full_mask], (0.0, 0.0, 1.0))
