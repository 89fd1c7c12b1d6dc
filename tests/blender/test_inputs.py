"""Hostile and odd input pictures, in real Blender through the installed extension and the real backend.

Paths that do not exist, folders, unreadable and empty files, non-ASCII and very long paths, and image
datablocks in the formats Blender hands over (float/HDR, EXR, 16-bit PNG, grey+alpha, alpha only, painted
and unsaved, missing pixels). Each either works or gives a clear error; a failure never changes the scene.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.blender.blender_session import backend_children, bpy
from tests.blender.test_extension import (  # noqa: F401 - module fixtures, one installed extension here
    BACKEND_PYTHON,
    built_zip,
    ext,
    picture,
)
from tests.blender.test_faults import FAST, scene_state, user_scene, verdicts  # noqa: F401

pytestmark = pytest.mark.skipif(not BACKEND_PYTHON.exists(), reason="backend venv (.venv) not installed")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------------ helpers


def write_png_raw(path: Path, pixels: np.ndarray, color_type: int, depth: int = 8) -> Path:
    """A PNG of any plain colour type (0 grey, 2 RGB, 4 grey+alpha, 6 RGBA) at 8 or 16 bits, top row first."""
    height, width = pixels.shape[:2]
    rows = pixels.astype(">u2" if depth == 16 else np.uint8).reshape(height, -1).tobytes()
    stride = len(rows) // height
    raw = b"".join(b"\x00" + rows[i * stride:(i + 1) * stride] for i in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    path.write_bytes(PNG_MAGIC + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))
    return path


def disc(size: int = 64) -> np.ndarray:
    """A soft-shaded disc: coverage [H, W] in 0..1 (1 inside) and shade [H, W] in 0..1."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    r = np.hypot(x - size / 2, y - size / 2) / (size * 0.4)  # [H, W]
    return np.where(r < 1.0, np.clip(1.0 - 0.6 * r, 0.0, 1.0), 0.0).astype(np.float32)


def blender_pixels(top_first: np.ndarray) -> np.ndarray:
    """Blender's pixel order (bottom row first, flat) from RGBA [H, W, 4] top row first."""
    return np.ascontiguousarray(top_first[::-1], dtype=np.float32).ravel()


def image_state(image: Any) -> tuple:
    """What the user would notice changing on an image datablock."""
    pixels = np.empty(len(image.pixels), np.float32)
    image.pixels.foreach_get(pixels)
    return (image.name, image.source, image.filepath, image.is_dirty, image.packed_file is not None,
            tuple(image.size), image.colorspace_settings.name, image.alpha_mode, pixels.tobytes())


def generate_fails(verdicts: list[set[str]], **kwargs: Any) -> str:  # noqa: F811
    with pytest.raises(RuntimeError) as info:  # an ERROR report raises in background mode
        bpy.ops.hi3dgen.generate(params_json=FAST, **kwargs)
    assert verdicts[-1] == {"CANCELLED"}
    assert "Traceback" not in str(info.value)
    return str(info.value)


def generate_works(verdicts: list[set[str]], before: dict[str, Any], **kwargs: Any) -> Any:  # noqa: F811
    """Run the operator; it must add exactly one mesh object (into Hi3DGen) and nothing else."""
    assert bpy.ops.hi3dgen.generate(params_json=FAST, **kwargs) == {"FINISHED"}
    assert verdicts[-1] == {"FINISHED"}
    after = scene_state()
    (new,) = set(after["objects"]) - set(before["objects"])
    assert set(after["objects"]) - {new} == set(before["objects"])
    for kind in ("images", "materials", "collections", "node_groups"):
        assert after[kind] == before[kind], f"no {kind} added"
    obj = bpy.data.objects[new]
    assert obj.type == "MESH" and len(obj.data.polygons) > 0 and new in after["in_hi3dgen"]
    return obj


@pytest.fixture
def panel_image(ext):  # noqa: F811
    """Point the panel at an image datablock (source IMAGE) for one test."""
    props = bpy.context.window_manager.hi3dgen
    saved = (props.source, props.image_path)

    def use(image: Any) -> None:
        props.source = "IMAGE"
        props.image = image

    yield use
    props.source, props.image_path = saved
    props.image = None


# ------------------------------------------------------------------------------------------ paths


BAD_FILES = [
    ("missing", "Image file not found"),
    ("folder", "is a folder, not an image file"),
    ("empty", "The image file is empty (0 bytes)"),
    ("not_an_image", "Cannot decode the image"),
    ("fifo", "This is a named pipe, not a regular file"),
    ("device", "This is a device, not a regular file"),
    ("eps", "is an EPS/PostScript file, which is not read (accepted: PNG"),
]
DECODED_BY_THE_BACKEND = ("not_an_image", "eps")


@pytest.mark.parametrize(("case", "words"), BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_bad_file_is_refused_and_the_scene_kept(ext, verdicts, tmp_path, case, words):  # noqa: F811
    path = tmp_path / "input.png"
    if case == "folder":
        path.mkdir()
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "not_an_image":
        path.write_bytes(b"plain text, no image signature\n" * 8)  # a GIF/PNG header would parse a size
    elif case == "fifo":
        os.mkfifo(path)  # no writer: opening it plainly would block Blender for ever
    elif case == "device":
        path = Path("/dev/zero")  # endless: reading it to the end would never finish
    elif case == "eps":
        path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 32 32\nshowpage\n%%EOF\n")
    before = user_scene()
    text = generate_fails(verdicts, image_path=str(path))
    assert words in text and (case in DECODED_BY_THE_BACKEND or str(path) in text)
    assert ext.generation.last_error().code == "bad_input" and words in ext.generation.last_error().message
    assert scene_state() == before
    with pytest.raises(ext.api.GenerationError) as info:  # the scripting API says the same
        ext.api.generate(str(path))
    assert words in str(info.value) and info.value.code == "bad_input"
    assert scene_state() == before
    if case not in DECODED_BY_THE_BACKEND:  # refused by the add-on itself: no backend needed for that
        ext.generation.stop_backend()
        with pytest.raises(RuntimeError):
            bpy.ops.hi3dgen.generate(image_path=str(path))
        assert backend_children() == []


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(verdicts, tmp_path):  # noqa: F811
    path = write_png_raw(tmp_path / "locked.png", np.zeros((8, 8, 4), np.uint8), 6)
    path.chmod(0)
    try:
        before = user_scene()
        text = generate_fails(verdicts, image_path=str(path))
        assert "Cannot read the image file" in text and "permission" in text.lower()
        assert scene_state() == before
    finally:
        path.chmod(0o644)


def test_unreadable_file_simulated(ext, verdicts, tmp_path, monkeypatch):  # noqa: F811
    """As root nothing is unreadable: make the add-on's ``open`` fail as it would for a locked file."""
    path = write_png_raw(tmp_path / "locked.png", np.zeros((8, 8, 4), np.uint8), 6)

    def locked(file: Any, *args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr(ext.files, "open", locked, raising=False)
    before = user_scene()
    text = generate_fails(verdicts, image_path=str(path))
    assert "Cannot read the image file (Permission denied)" in text and "Check its permissions" in text
    assert scene_state() == before


def test_non_ascii_and_very_long_path(ext, verdicts, tmp_path):  # noqa: F811
    folder = tmp_path / ("Ünïcødé ñandú 日本語 папка " * 4).strip() / ("ä" * 60) / "x y' \"z\" (1) [2] #3 %4"
    folder.mkdir(parents=True)
    stem = "猫の写真 ñandú – Ökø " * 3
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., 0] = (255 * disc()).astype(np.uint8)
    rgba[..., 3] = np.where(disc() > 0, 255, 0)
    path = write_png_raw(folder / f"{stem}.png", rgba, 6)
    assert len(str(path)) > 200 and len(str(path).encode()) > 300
    before = user_scene()
    obj = generate_works(verdicts, before, image_path=str(path))
    assert obj.name.startswith("猫の写真")  # named after the file (the backend keeps letters of any script)
    assert ext.generation.last_error() is None


# ------------------------------------------------------------------------------------------ datablocks


def make_float_hdr() -> Any:
    """A float image as generated in Blender with HDR values (up to 8) and a disc of coverage."""
    image = bpy.data.images.new("hdr generated", 64, 64, alpha=True, float_buffer=True)
    cover = disc()
    rgba = np.stack([8.0 * cover, 2.0 * cover, 0.5 * cover, (cover > 0).astype(np.float32)], axis=-1)
    image.pixels.foreach_set(blender_pixels(rgba))
    return image


def make_saved(fmt: str, suffix: str, depth: str, tmp_path: Path) -> Any:
    """``make_float_hdr`` written by Blender as ``fmt`` and loaded back as a file image."""
    source = make_float_hdr()
    settings = bpy.context.scene.render.image_settings
    saved = (settings.file_format, settings.color_mode, settings.color_depth)
    settings.file_format = fmt
    settings.color_mode = "RGB" if fmt == "HDR" else "RGBA"
    if depth:
        settings.color_depth = depth
    path = tmp_path / f"saved{suffix}"
    try:
        source.save_render(str(path), scene=bpy.context.scene)
    finally:
        settings.file_format, settings.color_mode = saved[:2]
        if saved[0] in ("PNG", "TIFF", "OPEN_EXR"):
            settings.color_depth = saved[2]
    bpy.data.images.remove(source)
    image = bpy.data.images.load(str(path))
    assert image.file_format == fmt and image.is_float
    return image


def make_png16(tmp_path: Path, color_type: int, packed: bool = False) -> Any:
    cover = disc()
    channels = {0: [cover], 4: [cover, cover > 0], 2: [cover, 0.5 * cover, cover * 0], 6: [cover, cover, 0.3 * cover,
                                                                                          cover > 0]}[color_type]
    pixels = (np.stack(channels, axis=-1).astype(np.float32) * 65535 + 0.5).astype(np.uint16)
    image = bpy.data.images.load(str(write_png_raw(tmp_path / f"deep{color_type}.png", pixels, color_type, 16)))
    if packed:
        image.pack()
    return image


def make_grey_alpha(tmp_path: Path) -> Any:
    cover = disc()
    pixels = np.stack([255 * cover, np.where(cover > 0, 255, 0)], axis=-1)
    return bpy.data.images.load(str(write_png_raw(tmp_path / "grey_alpha.png", pixels, 4)))


def make_alpha_only() -> Any:
    """Black everywhere; the shape is only in the alpha channel."""
    image = bpy.data.images.new("alpha only", 64, 64, alpha=True)
    rgba = np.zeros((64, 64, 4), np.float32)
    rgba[..., 3] = (disc() > 0).astype(np.float32)
    image.pixels.foreach_set(blender_pixels(rgba))
    return image


def make_painted(tmp_path: Path) -> Any:
    """A PNG file image painted on in Blender and not saved (is_dirty): the painted pixels count."""
    blank = np.zeros((64, 64, 4), np.uint8)
    image = bpy.data.images.load(str(write_png_raw(tmp_path / "blank.png", blank, 6)))
    cover = disc()
    image.pixels.foreach_set(blender_pixels(np.stack([cover, cover, cover, cover > 0], axis=-1)))
    assert image.is_dirty
    return image


IMAGE_CASES = {
    "float_hdr_generated": lambda tmp: make_float_hdr(),
    "radiance_hdr_file": lambda tmp: make_saved("HDR", ".hdr", "", tmp),
    "openexr_file": lambda tmp: make_saved("OPEN_EXR", ".exr", "16", tmp),
    "png16_rgba": lambda tmp: make_png16(tmp, 6),
    "png16_grey": lambda tmp: make_png16(tmp, 0),
    "png16_grey_alpha_packed": lambda tmp: make_png16(tmp, 4, packed=True),
    "grey_alpha": make_grey_alpha,
    "alpha_only": lambda tmp: make_alpha_only(),
    "painted_unsaved": make_painted,
}


@pytest.mark.parametrize("case", list(IMAGE_CASES))
def test_image_datablock_formats_work(ext, verdicts, panel_image, tmp_path, case):  # noqa: F811
    user_scene()
    image = IMAGE_CASES[case](tmp_path)
    panel_image(image)
    before, untouched = scene_state(), image_state(image)
    generate_works(verdicts, before)
    assert image_state(image) == untouched, "the user's image is left as it was"


def test_painted_pixels_are_what_is_sent(ext, tmp_path):  # noqa: F811
    """An unsaved, painted file image goes as its current pixels, not as the stale file on disk."""
    user_scene()
    image = make_painted(tmp_path)
    data = ext.sources.picture_from_image(image).data
    assert data != (tmp_path / "blank.png").read_bytes() and data.startswith(PNG_MAGIC)
    sent = bpy.data.images.load(str(tmp_path / "sent.png")) if (tmp_path / "sent.png").write_bytes(data) else None
    pixels = np.empty(64 * 64 * 4, np.float32)
    sent.pixels.foreach_get(pixels)
    top = pixels.reshape(64, 64, 4)[::-1]
    assert top[32, 32, 0] > 0.9 and top[32, 32, 3] == 1.0 and top[0, 0, 3] == 0.0


def test_float_pixels_are_unpremultiplied_and_srgb_encoded(ext, tmp_path):  # noqa: F811
    """Blender's float buffers hold premultiplied linear colour: the PNG sent carries straight sRGB."""
    user_scene()
    pixels = np.full((8, 8, 4), 32768, np.uint16)  # sRGB grey 0.5 at alpha 0.5
    image = bpy.data.images.load(str(write_png_raw(tmp_path / "half.png", pixels, 6, 16)))
    flat = np.empty(8 * 8 * 4, np.float32)
    image.pixels.foreach_get(flat)
    assert flat[0] == pytest.approx(0.214 * 0.5, abs=0.01), "Blender premultiplies (and linearises)"
    image.pixels.foreach_set(flat)  # now 'painted': the pixels are encoded by the add-on
    data = ext.sources.picture_from_image(image).data
    (tmp_path / "sent.png").write_bytes(data)
    sent = bpy.data.images.load(str(tmp_path / "sent.png"))
    back = np.empty(8 * 8 * 4, np.float32)
    sent.pixels.foreach_get(back)
    assert back[:4] == pytest.approx([128 / 255, 128 / 255, 128 / 255, 128 / 255], abs=1.5 / 255)


BAD_IMAGES = {
    "fully_transparent": (lambda tmp: bpy.data.images.new("clear", 32, 32, alpha=True), ""),
    "one_pixel": (lambda tmp: bpy.data.images.new("dot", 1, 1), "too small"),
    "file_gone": (lambda tmp: make_gone(tmp), "has no pixels (its file is missing or unreadable"),
}


def make_gone(tmp_path: Path) -> Any:
    path = write_png_raw(tmp_path / "gone.png", np.zeros((8, 8, 4), np.uint8), 6)
    image = bpy.data.images.load(str(path))
    path.unlink()
    image.reload()
    return image


@pytest.mark.parametrize("case", list(BAD_IMAGES))
def test_unusable_image_datablock_is_explained(ext, verdicts, panel_image, tmp_path, case):  # noqa: F811
    user_scene()
    make, words = BAD_IMAGES[case]
    image = make(tmp_path)
    if case == "fully_transparent":
        image.pixels.foreach_set(np.zeros(32 * 32 * 4, np.float32))
    panel_image(image)
    before = scene_state()
    text = generate_fails(verdicts)
    failure = ext.generation.last_error()
    assert failure.code == "bad_input" and failure.message in text, "the panel shows this error, not an old one"
    if case != "file_gone":  # refused by the backend: what to do comes from its hint
        assert failure.hint and failure.hint in text
    assert words in text
    assert scene_state() == before


def test_failure_log_is_the_requests_own(ext, verdicts, tmp_path):  # noqa: F811
    """The log attached to a failure holds the backend's lines for that request, not older requests'."""
    first = tmp_path / "first.png"
    first.write_bytes(b"not an image at all")
    user_scene()
    generate_fails(verdicts, image_path=str(first))
    proc = ext.generation.running_backend()
    deadline = time.monotonic() + 60  # returns as soon as the line is in
    while "Cannot decode the image 'first'" not in proc.log_tail() and time.monotonic() < deadline:
        time.sleep(0.02)  # the log is read on its own thread
    assert "Cannot decode the image 'first'" in proc.log_tail()
    second = write_png_raw(tmp_path / "second.png", np.zeros((1, 1, 4), np.uint8), 6)
    generate_fails(verdicts, image_path=str(second))
    assert "1x1 pixels" in ext.generation.last_error().message
    assert "'first'" not in ext.generation.last_error().log
