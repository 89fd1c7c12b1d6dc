"""The backend as a real subprocess: handshake, round trips, big meshes, cancel, bad input, shutdown."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import trimesh

from backend import protocol as P

from .conftest import BackendProcess, assert_stopped_at_next_step, blob_rgba, cancel_with_fence, png_bytes


def _generate(backend: BackendProcess, rid: int, image: bytes, engine: str = "relief", **params) -> dict:
    backend.send(P.Generate(engine=engine, image_name="blob.png", params=params,
                            image_bytes=np.frombuffer(image, np.uint8)), rid)
    return backend.collect(rid)


def _still_serving(backend: BackendProcess) -> None:
    backend.send(P.Ping(), 999)
    while True:
        msg, rid = backend.next(60)
        if isinstance(msg, P.Pong):
            assert rid == 999
            return


def test_handshake(backend):
    hello = backend.hello
    assert hello.protocol == P.PROTOCOL_VERSION
    assert hello.pid == backend.proc.pid
    assert "cpu" in hello.devices
    relief = next(e for e in hello.engines if e["name"] == "relief")
    assert relief["available"] and {p["name"] for p in relief["params"]} >= {"resolution", "depth"}


def test_generate_round_trip(backend, blob_png):
    out = _generate(backend, 1, blob_png)
    assert out["error"] is None, out["error"]
    assert out["done"].mesh_count == 1 and len(out["meshes"]) == 1
    assert [p.step for p in out["progress"]] == sorted(p.step for p in out["progress"])
    mesh = out["meshes"][0]
    tm = trimesh.Trimesh(mesh["vertices"], mesh["faces"], process=False)
    assert tm.is_watertight and tm.is_winding_consistent and tm.volume > 0
    assert mesh["corner_edge"].shape == mesh["faces"].shape and "edges" not in mesh  # protocol 5: derived
    assert int(mesh["corner_edge"].max()) + 1 == len(tm.edges_unique)
    nm = out["normal_map"]
    assert nm.pixels.dtype == np.uint16 and nm.pixels.shape == (nm.height, nm.width, 4)


def test_million_face_mesh_arrives_intact(backend, blob_png):
    out = _generate(backend, 2, blob_png, resolution=1024, faces=0)  # the full grid mesh, undecimated
    assert out["error"] is None, out["error"]
    mesh = out["meshes"][0]  # MeshAssembly.finish() verified sizes and CRC32 of every array
    assert len(mesh["faces"]) > 1_000_000
    assert mesh["faces"].max() < len(mesh["vertices"])


def test_a_request_can_leave_the_edges_to_blender(backend, blob_png):
    backend.send(P.Generate(image_name="blob.png", params={"resolution": 64}, want_edges=False,
                            image_bytes=np.frombuffer(blob_png, np.uint8)), 5)
    out = backend.collect(5)
    assert out["error"] is None and "corner_edge" not in out["meshes"][0]


def test_two_requests_in_a_row_same_process(backend, blob_png):
    first = _generate(backend, 3, blob_png)
    second = _generate(backend, 4, blob_png)
    assert first["done"] and second["done"]
    assert np.array_equal(first["meshes"][0]["faces"], second["meshes"][0]["faces"])
    assert backend.proc.poll() is None


def test_cancel_mid_run_then_next_request_works(blob_png):
    proc = BackendProcess(env={"HI3DGEN_TEST_ENGINES": "1"})
    try:
        proc.expect(P.Hello)
        proc.send(P.Generate(engine="test-slow", params={"steps": 10_000, "step_seconds": 0.02},
                             image_bytes=np.frombuffer(blob_png, np.uint8)), 5)  # only the cancel ends it
        seen, _ = proc.expect(P.Progress)
        assert_stopped_at_next_step(cancel_with_fence(proc, 5), 5, seen)
        out = _generate(proc, 6, blob_png)
        assert out["done"] is not None
    finally:
        proc.close()


def test_shutdown_leaves_no_process(blob_png):
    proc = BackendProcess()
    proc.expect(P.Hello)
    proc.send(P.Shutdown())
    assert proc.proc.wait(timeout=60) == 0


def test_end_of_input_ends_the_backend():
    proc = BackendProcess()
    proc.expect(P.Hello)
    proc.proc.stdin.close()
    assert proc.proc.wait(timeout=60) == 0


def _png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + b"\x00\x00\x00\x00IEND\xaeB`\x82"


BAD_IMAGES = {
    "empty": b"",
    "truncated_png": png_bytes(blob_rgba())[:300],
    "text_named_png": b"hello, I am not an image\n",
    "one_pixel": png_bytes(np.zeros((1, 1, 4), np.uint8)),
    "huge_header": _png_header_only(20000, 20000),
}


@pytest.mark.parametrize("case", sorted(BAD_IMAGES))
def test_bad_images_get_a_structured_error(backend, case):
    out = _generate(backend, 7, BAD_IMAGES[case])
    assert out["error"] is not None and out["error"].code == "bad_input", out
    assert out["error"].message and out["error"].hint
    if case == "huge_header":  # refused by the size check on the header, not by a failed decode
        assert "limit" in out["error"].message and "megapixels" in out["error"].message
    _still_serving(backend)


def test_sixteen_bit_and_greyscale_images_work(backend):
    grey = (blob_rgba()[..., 3] // 2 + 60).astype(np.uint8)
    grey[:8], grey[-8:], grey[:, :8], grey[:, -8:] = 255, 255, 255, 255  # plain white border
    sixteen = grey.astype(np.uint16) * 257
    for rid, data in ((8, png_bytes(grey, "L")), (9, png_bytes(sixteen))):
        out = _generate(backend, rid, data)
        assert out["error"] is None, out["error"]


def test_unknown_engine_and_bad_params(backend, blob_png):
    out = _generate(backend, 10, blob_png, engine="nope")
    assert out["error"].code == "unknown_engine"
    out = _generate(backend, 11, blob_png, resolution="huge")
    assert out["error"].code == "bad_input" and "resolution" in out["error"].message
    _still_serving(backend)


def test_malformed_frames_are_refused_and_serving_continues(backend):
    backend.send_raw(b"garbage that is not a frame at all")  # bad magic: resync to the next frame
    err, _ = backend.expect(P.Error)
    assert err.code == "protocol"
    _still_serving(backend)
    body = b'{"arrays": [{"name": "nope", "dtype": "<f4", "shape": [1]}]}'
    backend.send_raw(P.HEADER.pack(P.MAGIC, P.PROTOCOL_VERSION, P.Generate.KIND, 1, len(body), 4) + body + b"\0" * 4)
    err, _ = backend.expect(P.Error)
    assert err.code == "protocol"
    _still_serving(backend)


def test_oversized_frame_and_wrong_version(backend):
    backend.send_raw(P.HEADER.pack(P.MAGIC, P.PROTOCOL_VERSION, P.Generate.KIND, 1, 10, P.MAX_PAYLOAD + 1))
    err, _ = backend.expect(P.Error)
    assert err.code == "frame_too_large"
    backend.send_raw(P.HEADER.pack(P.MAGIC, 99, P.Ping.KIND, 1, 2, 0) + b"{}")
    err, _ = backend.expect(P.Error)
    assert err.code == "protocol_version"
    _still_serving(backend)


def test_a_mask_image_replaces_the_alpha(backend):
    """An opaque photo with no plain background: the user's mask (white = object) decides the outline."""
    rng = np.random.default_rng(0)
    photo = (rng.random((96, 96, 3)) * 255).astype(np.uint8)  # noise everywhere: no background to estimate
    mask = np.zeros((48, 48), np.uint8)  # half the size: resized to the image
    mask[12:36, 8:24] = 255
    backend.send(P.Generate(image_name="photo", params={"resolution": 48},
                            image_bytes=np.frombuffer(png_bytes(photo), np.uint8),
                            mask_bytes=np.frombuffer(png_bytes(mask), np.uint8)), 31)
    out = backend.collect(31)
    assert out["error"] is None, out["error"]
    nm = out["normal_map"]
    alpha = nm.pixels[..., 3] > 32767
    rows, cols = np.nonzero(alpha)
    assert alpha.shape[0] / alpha.shape[1] > 1.2  # the normal map covers the mask's tall box, not the photo
    assert rows.size and cols.size
    backend.send(P.Generate(image_name="photo", image_bytes=np.frombuffer(png_bytes(photo), np.uint8),
                            mask_bytes=np.frombuffer(png_bytes(np.zeros((8, 8), np.uint8)), np.uint8)), 32)
    err = backend.collect(32)["error"]
    assert err is not None and err.code == "bad_input" and "mask" in err.message
    _still_serving(backend)
