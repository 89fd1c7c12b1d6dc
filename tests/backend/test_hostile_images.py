"""Hostile and broken image input, in-process: formats outside the allow-list, EXIF orientation, bit depths,
degenerate shapes, our own pixel limit, prose errors, and files that are not regular files."""

from __future__ import annotations

import io
import os
import socket
import struct
import subprocess
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from backend.engines.base import EngineRequest, validate_params
from backend.engines.relief import WORK_SIDE, ReliefEngine
from backend.errors import BadInput, Cancelled
from backend.images import ACCEPTED_TEXT, MIN_SIDE, decode_image, load_image, read_image_bytes
from backend.jobs import JobContext

from .conftest import blob_rgba

EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 32 32\n%%EndComments\n"
       b"newpath 0 0 moveto 32 32 lineto stroke showpage\n%%EOF\n")
DOS_EPS = b"\xc5\xd0\xd3\xc6" + struct.pack("<IIIIII", 30, len(EPS), 0, 0, 0, 0) + b"\xff\xff" + EPS


def encode(img: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_raw(pixels: np.ndarray, color_type: int, depth: int) -> bytes:
    """A plain PNG (colour type 0 grey, 2 RGB, 4 grey+alpha, 6 RGBA) at 8 or 16 bits, written by hand."""
    height = pixels.shape[0]
    rows = pixels.astype(">u2" if depth == 16 else np.uint8).reshape(height, -1).tobytes()
    stride = len(rows) // height
    raw = b"".join(b"\x00" + rows[i * stride:(i + 1) * stride] for i in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", pixels.shape[1], height, depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + b"\x00\x00\x00\x00IEND\xaeB`\x82"


def refusal(data: bytes) -> BadInput:
    with pytest.raises(BadInput) as info:
        decode_image(data, "x")
    assert "object at 0x" not in info.value.message and info.value.hint
    return info.value


# ------------------------------------------------------------------------------------------- formats


@pytest.mark.parametrize("data", [EPS, DOS_EPS], ids=["eps", "dos-eps"])
def test_eps_is_refused_and_starts_no_program(data, monkeypatch):
    def no_program(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a program was started: {args}")

    monkeypatch.setattr(subprocess, "Popen", no_program)
    monkeypatch.setattr(os, "posix_spawn", no_program, raising=False)
    err = refusal(data)
    assert "EPS" in err.message and ACCEPTED_TEXT in err.message


@pytest.mark.parametrize("fmt", ["GIF", "PPM", "ICO", "PCX", "SGI"])
def test_other_pillow_formats_are_refused_with_the_accepted_list(fmt):
    data = encode(Image.new("RGB", (32, 32), (200, 10, 10)), fmt)
    assert ACCEPTED_TEXT in refusal(data).message


def test_openexr_is_refused_with_what_to_do():
    err = refusal(b"\x76\x2f\x31\x01" + bytes(200))
    assert "OpenEXR" in err.message and "Blender" in err.hint


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "TIFF", "TGA"])
def test_accepted_formats_decode(fmt):
    out = decode_image(encode(Image.new("RGB", (24, 16), (255, 0, 0)), fmt))
    assert out.rgba.shape == (16, 24, 4)
    assert out.rgba[8, 12, 0] > 0.9 and out.rgba[8, 12, 1] < 0.1


def test_a_tiff_pillow_cannot_decode_is_named():
    data = io.BytesIO()
    tifffile.imwrite(data, np.full((16, 16, 3), 0.5, np.float32), photometric="rgb")  # float RGB
    err = refusal(data.getvalue())
    assert "TIFF" in err.message


@pytest.mark.parametrize("data", [b"hello, not an image\n", b"\x89PNG\r\n\x1a\n" + bytes(40),
                                  encode(Image.new("RGB", (64, 64)), "JPEG")[:200], b"\x00" * 300])
def test_decode_errors_read_as_prose(data):
    err = refusal(data)
    assert "<" not in err.message and "0x" not in err.message


# ------------------------------------------------------------------------------------------- orientation, depth


def test_exif_orientation_is_applied():
    """Orientation 6: the camera was turned; the stored 40x20 picture is shown rotated 90 degrees clockwise."""
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 8, 8))  # white in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6
    out = decode_image(encode(img, "JPEG", exif=exif, quality=95))
    assert out.rgba.shape == (40, 20, 4)
    assert out.rgba[2, -3, 0] > 0.9 and out.rgba[2, 2, 0] < 0.1  # now in the top-right corner


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_unreadable_exif_keeps_the_pixels_as_stored_and_multi_picture_jpegs_decode():
    img = Image.new("RGB", (40, 20), (0, 200, 0))
    out = decode_image(encode(img, "JPEG", exif=b"Exif\x00\x00II*\x00\xff\xff\xff\x7f" + bytes(8)))
    assert out.rgba.shape == (20, 40, 4)
    mpo = decode_image(encode(img, "MPO", save_all=True, append_images=[Image.new("RGB", (40, 20))]))
    assert mpo.rgba.shape == (20, 40, 4) and mpo.rgba[5, 5, 1] > 0.7  # phones' JPEGs: the first picture


def test_dark_sixteen_bit_grey_png_is_scaled_by_its_depth_not_its_values():
    pixels = np.full((16, 16), 1000, np.uint16)  # a dark 16-bit image: max 1000, far above 255
    pixels[0, 0] = 0
    out = decode_image(png_raw(pixels, 0, 16))
    assert out.rgba[5, 5, 0] == pytest.approx(1000 / 65535, abs=1e-6)
    low = decode_image(png_raw(np.full((16, 16), 200, np.uint16), 0, 16))  # max 200 <= 255: still 16-bit
    assert low.rgba[5, 5, 0] == pytest.approx(200 / 65535, abs=1e-6)


@pytest.mark.parametrize("color_type, channels", [(2, 3), (4, 2), (6, 4)])
def test_sixteen_bit_colour_pngs_are_scaled(color_type, channels):
    pixels = np.full((16, 16, channels), 40000, np.uint16)
    out = decode_image(png_raw(pixels, color_type, 16))
    assert out.rgba[5, 5, 0] == pytest.approx(40000 / 65535, abs=1 / 255)
    assert out.rgba[5, 5, 3] == pytest.approx(40000 / 65535 if channels in (2, 4) else 1.0, abs=1 / 255)


def test_sixteen_bit_and_signed_tiffs_are_scaled_by_their_depth():
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.full((16, 16), 1000, np.uint16))
    assert decode_image(buf.getvalue()).rgba[3, 3, 0] == pytest.approx(1000 / 65535, abs=1e-6)
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.full((16, 16), 1000, np.int16))
    assert decode_image(buf.getvalue()).rgba[3, 3, 0] == pytest.approx(1000 / 32767, abs=1e-6)


def test_float_tiff_keeps_its_values_and_clips_to_unit_range():
    plane = np.full((16, 16), 0.25, np.float32)
    plane[0, 0], plane[0, 1] = 7.0, -2.0
    out = decode_image(encode(Image.fromarray(plane, mode="F"), "TIFF"))
    assert out.rgba[5, 5, 0] == pytest.approx(0.25) and out.rgba[0, 0, 0] == 1.0 and out.rgba[0, 1, 0] == 0.0


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_float_pixels_are_refused(value):
    plane = np.full((16, 16), 0.5, np.float32)
    plane[3, 4] = value
    err = refusal(encode(Image.fromarray(plane, mode="F"), "TIFF"))
    assert "1 pixels that are not numbers" in err.message


# ------------------------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("size", [(1, 1), (1, 500), (500, 1), (2, 2), (3, 3), (8, 8), (15, 400)])
def test_degenerate_shapes_are_too_small(size):
    err = refusal(encode(Image.new("RGBA", size, (9, 9, 9, 255))))
    assert f"{size[0]}x{size[1]} pixels, too small" in err.message and str(MIN_SIDE) in err.hint


@pytest.mark.parametrize("size", [(MIN_SIDE, MIN_SIDE), (MIN_SIDE, 1000), (1000, MIN_SIDE)])
def test_the_smallest_images_make_a_relief(size):
    rgba = np.zeros((size[1], size[0], 4), np.uint8)
    rgba[2:-2, 2:-2] = (200, 100, 50, 255)
    image = decode_image(encode(Image.fromarray(rgba)))
    request = EngineRequest(image, "t", 0, validate_params(ReliefEngine.params, {}))
    assert len(ReliefEngine().generate(request, JobContext()).meshes[0].faces) > 0
    assert ReliefEngine().normals(request, JobContext()).normal_map.normals.shape[:2] == (size[1], size[0])


def test_the_pixel_limit_is_ours_not_pillows():
    pillow_default = Image.MAX_IMAGE_PIXELS
    between = png_header_only(9500, 10000)  # 95 MP: above Pillow's default warning, under our limit
    assert "megapixels" not in refusal(between).message  # passes the size check, fails only on pixels
    for width, height in ((20000, 20000), (15000, 15000), (16384, 8000)):  # over Pillow's error level too
        err = refusal(png_header_only(width, height))
        assert f"{width}x{height} pixels, over the limit" in err.message
    assert pillow_default == Image.MAX_IMAGE_PIXELS, "restored"


# ------------------------------------------------------------------------------------------- files


def finishes(call: Callable[[], object]) -> BaseException | None:
    """Run ``call`` on a thread; fail if it is still blocked after a generous 60 s; return what it raised."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(60)
    assert outcome, "the read blocked"
    return outcome[0]


NO_FIFOS = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")


@NO_FIFOS
def test_fifo_device_and_socket_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # no writer: a plain open() would block for ever
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "sock.png"))
    try:
        for path, kind in ((fifo, "named pipe"), (Path("/dev/zero"), "device"), (tmp_path / "sock.png", "socket")):
            err = finishes(lambda p=path: read_image_bytes(str(p)))
            assert isinstance(err, BadInput) and kind in err.message and "not a regular file" in err.message
    finally:
        server.close()


@NO_FIFOS
def test_a_path_swapped_for_a_fifo_after_the_check_does_not_block(tmp_path, monkeypatch):
    fifo = tmp_path / "swapped.png"
    os.mkfifo(fifo)
    regular = os.stat(__file__)
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: regular if str(p) == str(fifo) else real_stat(p, *a, **k))
    err = finishes(lambda: read_image_bytes(str(fifo)))
    assert isinstance(err, BadInput) and "named pipe" in err.message


def test_reads_are_bounded(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(bytes(5000))
    with pytest.raises(BadInput, match="too large"):
        read_image_bytes(str(path), limit=4096)
    assert read_image_bytes(str(path), limit=5000) == bytes(5000)


def test_odd_path_strings(tmp_path):
    for name in ("-x.png", "a\nb.png"):
        with pytest.raises(BadInput, match="not found"):
            load_image(str(tmp_path / name))
        Image.new("RGB", (16, 16)).save(tmp_path / name, format="PNG")
        assert load_image(str(tmp_path / name)).rgba.shape == (16, 16, 4)
    with pytest.raises(BadInput, match="NUL"):
        load_image("a\x00b.png")


# ------------------------------------------------------------------------------------------- large images


def big_photo(side: int = 6000) -> bytes:
    """A large, mostly flat PNG with one object: small as a file, large as pixels."""
    yy, xx = np.ogrid[:side, :side]
    rgb = np.full((side, side, 3), 240, np.uint8)
    rgb[(xx - side // 2) ** 2 + (yy - side // 2) ** 2 < (side // 3) ** 2] = (180, 90, 40)
    return encode(Image.fromarray(rgb), compress_level=1)


def test_large_images_work_at_the_working_size_and_cancel_inside_the_first_stage():
    image = decode_image(big_photo(4500))
    request = EngineRequest(image, "t", 0, validate_params(ReliefEngine.params, {}))
    steps: list[int] = []
    ctx = JobContext()

    def report(stage: str, step: int, total: int, message: str) -> None:
        steps.append(step)
        ctx.cancel_event.set()  # the client cancels as soon as it sees the first progress frame

    ctx.report = report
    with pytest.raises(Cancelled):
        ReliefEngine().generate(request, ctx)
    assert steps == [0], "cancelled inside the first stage, not after it"
    out = ReliefEngine().normals(request, JobContext())
    assert max(out.normal_map.normals.shape[:2]) <= WORK_SIDE


@dataclass
class _Recorder(JobContext):
    """A context that records every cancel check and every progress report, in order."""

    events: list[str] = field(default_factory=list)

    def check(self) -> None:
        self.events.append("check")
        super().check()


@pytest.mark.parametrize("command", ["generate", "normals"])
def test_every_relief_stage_has_a_cancel_point_inside_it(command):
    image = decode_image(encode(Image.fromarray(blob_rgba(256))))
    request = EngineRequest(image, "t", 0, validate_params(ReliefEngine.params, {"resolution": 64}))
    ctx = _Recorder()
    ctx.report = lambda stage, step, total, message: ctx.events.append(f"step {step}")
    getattr(ReliefEngine(), command)(request, ctx)
    steps = [i for i, e in enumerate(ctx.events) if e.startswith("step")]
    for before, after in zip(steps, steps[1:]):
        assert ctx.events[before + 1:after].count("check") >= 2, ctx.events  # one inside, one of the step
