"""Image decoding limits and odd modes; normal-map conventions and the 16-bit PNG codec."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from backend.errors import BadInput
from backend.images import decode_image, load_image
from backend.normalmap import decode_png16, encode_png16, from_colors, to_colors, to_rgba16


def _encode(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "CMYK", "I;16", "1"])
def test_odd_modes_decode_to_rgba(mode):
    fmt = "JPEG" if mode == "CMYK" else ("TIFF" if mode == "I;16" else "PNG")
    img = Image.new(mode, (20, 16))
    out = decode_image(_encode(img, fmt))
    assert out.rgba.shape == (16, 20, 4) and out.rgba.dtype == np.float32
    assert out.rgba.min() >= 0.0 and out.rgba.max() <= 1.0


def test_alpha_only_mask_is_detected():
    img = Image.new("RGBA", (16, 16), (255, 0, 0, 0))
    img.putpixel((5, 5), (255, 0, 0, 255))
    assert decode_image(_encode(img)).has_alpha
    assert not decode_image(_encode(Image.new("RGBA", (16, 16), (1, 2, 3, 255)))).has_alpha


def test_paths_missing_folder_and_unicode(tmp_path):
    with pytest.raises(BadInput, match="not found"):
        load_image(str(tmp_path / "nope.png"))
    with pytest.raises(BadInput, match="folder"):
        load_image(str(tmp_path))
    odd = tmp_path / ("ünï cödé " + "x" * 180 + ".png")
    Image.new("RGB", (16, 16)).save(odd)
    assert load_image(str(odd)).rgba.shape == (16, 16, 4)


def test_decompression_bomb_is_refused_before_decoding():
    img = Image.new("L", (12000, 12000))  # 144 MP > the pixel limit, tiny file
    data = _encode(img)
    with pytest.raises(BadInput, match="over the limit"):
        decode_image(data)


def _sphere(size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = (np.mgrid[:size, :size] + 0.5) / size * 2 - 1
    x, y = xx, -yy
    mask = x ** 2 + y ** 2 < 1
    z = np.sqrt(np.clip(1 - x ** 2 - y ** 2, 0, 1))
    return np.stack([x, y, z], -1).astype(np.float32), mask


def test_png16_round_trip_of_sphere_normals():
    n, mask = _sphere()
    pixels = to_rgba16(n, mask)
    back = decode_png16(encode_png16(pixels))
    assert np.array_equal(back, pixels)
    decoded = from_colors(back[..., :3].astype(np.float32) / 65535.0)
    assert np.abs(decoded - n)[mask].max() < 1e-3
    assert Image.open(io.BytesIO(encode_png16(pixels))).size == (64, 64)  # other readers agree


def test_opengl_and_directx_differ_only_in_green():
    n, _ = _sphere()
    gl, dx = to_colors(n, "opengl"), to_colors(n, "directx")
    assert np.allclose(gl[..., [0, 2]], dx[..., [0, 2]])
    assert np.allclose(gl[..., 1], 1.0 - dx[..., 1])
    assert np.allclose(from_colors(dx, "directx"), from_colors(gl, "opengl"), atol=1e-5)


def test_object_space_faces_minus_y():
    flat = np.zeros((1, 1, 3), np.float32)
    flat[..., 2] = 1.0  # facing the viewer
    assert np.allclose(to_colors(flat, "object")[0, 0], [0.5, 0.0, 0.5])
    assert np.allclose(from_colors(to_colors(flat, "object"), "object"), flat, atol=1e-6)
