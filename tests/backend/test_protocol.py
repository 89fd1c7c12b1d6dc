"""The wire contract: round trips, chunked meshes, and a fuzzed decoder that only ever says ProtocolError."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend import protocol as P


def _roundtrip(msg: P.Message, rid: int = 3) -> P.Message:
    out, got = P.decode_bytes(P.encode_bytes(msg, rid))
    assert got == rid
    return out


def test_every_message_round_trips():
    for cls in P.MESSAGE_TYPES.values():
        assert type(_roundtrip(cls())) is cls


def test_fields_and_arrays_survive():
    msg = P.Generate(engine="hi3dgen", seed=-5, params={"steps": 3, "x": [1, 2]}, image_name="ü.png",
                     image_bytes=np.arange(300, dtype=np.uint8))
    out = _roundtrip(msg)
    assert out.params == msg.params and out.seed == -5 and out.image_name == "ü.png"
    assert np.array_equal(out.image_bytes, msg.image_bytes) and out.normal_bytes is None


def test_a_mesh_texture_carries_its_mesh_role_and_pixels():
    pixels = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(2, 3, 4)
    out = _roundtrip(P.MeshTexture(mesh_index=2, role="normal", width=3, height=2, pixels=pixels))
    assert (out.mesh_index, out.role, out.width, out.height) == (2, "normal", 3, 2)
    assert out.pixels.dtype == np.uint16 and np.array_equal(out.pixels, pixels)
    colour = _roundtrip(P.MeshTexture(role="base_color", width=3, height=2, pixels=pixels.astype(np.uint8)))
    assert colour.pixels.dtype == np.uint8 and set(P.TEXTURE_ROLES) == {"normal", "base_color"}
    assert P.MESSAGE_TYPES[P.MeshTexture.KIND] is P.MeshTexture and P.PROTOCOL_VERSION == 5


def test_big_endian_arrays_travel_little_endian():
    data = np.arange(6, dtype=">f4").reshape(2, 3)
    out = _roundtrip(P.MeshChunk(array="vertices", data=data))
    assert out.data.dtype == np.dtype("<f4") and np.array_equal(out.data, data)


def test_mesh_streams_in_bounded_chunks_and_reassembles():
    rng = np.random.default_rng(0)
    v = rng.random((50_000, 3), dtype=np.float32)
    f = rng.integers(0, 50_000, (90_000, 3), dtype=np.int32)
    frames = list(P.mesh_frames(0, "m", {"vertices": v, "faces": f}, chunk_bytes=64 << 10))
    assert len(frames) > 20
    out = _reassemble(frames)
    assert np.array_equal(out["vertices"], v) and np.array_equal(out["faces"], f)


def _reassemble(frames: list[P.Message]) -> dict[str, np.ndarray]:
    """The arrays of one mesh sent as ``frames`` through bytes, a frame reader and a ``MeshAssembly``."""
    reader = P.FrameReader(io.BytesIO(b"".join(P.encode_bytes(x) for x in frames)))
    asm = P.MeshAssembly(reader.read()[0])
    while (item := reader.read()) is not None:
        asm.add(item[0])
    return asm.finish()


def test_a_mesh_with_no_faces_and_an_empty_array_travel_and_reassemble():
    v = np.zeros((4, 3), np.float32)
    arrays = {"vertices": v, "faces": np.zeros((0, 3), np.int32), "uvs": np.zeros((4, 2), np.float32)}
    out = _reassemble(list(P.mesh_frames(0, "empty", arrays)))
    assert out["faces"].shape == (0, 3) and np.array_equal(out["vertices"], v)
    none = list(P.mesh_frames(1, "nothing", {"vertices": np.zeros((0, 3), np.float32),
                                             "faces": np.zeros((0, 3), np.int32)}))
    start = _roundtrip(none[0])
    assert P.MeshAssembly(start).finish()["vertices"].shape == (0, 3)
    chunk = P.MeshChunk(mesh_index=0, array="faces", offset=0, data=np.zeros((0, 3), np.int32))
    assert _roundtrip(chunk).data.shape == (0, 3)


def test_corrupted_mesh_fails_its_checksum():
    v = np.zeros((4, 3), np.float32)
    f = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
    start, *chunks = P.mesh_frames(0, "m", {"vertices": v, "faces": f})
    asm = P.MeshAssembly(start)
    for c in chunks:
        if c.array == "vertices":
            c.data = c.data + 1
        asm.add(c)
    with pytest.raises(P.ProtocolError, match="checksum"):
        asm.finish()


def test_missing_chunk_is_incomplete():
    start, first, *_ = P.mesh_frames(0, "m", {"vertices": np.zeros((4, 3)), "faces": np.zeros((2, 3))})
    asm = P.MeshAssembly(start)
    asm.add(first)
    with pytest.raises(P.ProtocolError, match="incomplete"):
        asm.finish()


def test_wrong_version_is_refused():
    raw = bytearray(P.encode_bytes(P.Ping()))
    raw[4] = 7
    with pytest.raises(P.ProtocolError) as info:
        P.decode_bytes(bytes(raw))
    assert info.value.code == "protocol_version"


def test_reader_skips_a_bad_frame_and_reads_the_next():
    bad = P.HEADER.pack(P.MAGIC, P.PROTOCOL_VERSION, 250, 0, 2, 0) + b"{}"
    stream = io.BytesIO(bad + P.encode_bytes(P.Ping(), 4))
    reader = P.FrameReader(stream)
    with pytest.raises(P.ProtocolError):
        reader.read()
    assert reader.read()[1] == 4


def test_resync_after_garbage():
    stream = io.BytesIO(b"xxxxH3" + P.encode_bytes(P.Ping(), 9))
    reader = P.FrameReader(stream)
    with pytest.raises(P.ProtocolError):
        reader.read()
    assert reader.resync()
    assert reader.read()[1] == 9


VALID = [P.encode_bytes(m) for m in (
    P.Generate(params={"a": 1}, image_bytes=np.arange(40, dtype=np.uint8)),
    P.MeshChunk(array="faces", data=np.zeros((3, 3), np.int32)),
    P.Progress(stage="x", step=1, total=2), P.Hello(engines=[{"name": "relief"}]),
)]


def _decode_stream(data: bytes) -> None:
    reader = P.FrameReader(io.BytesIO(data))
    for _ in range(64):  # bounded: every frame consumes at least a header
        try:
            if reader.read() is None:
                return
        except P.ProtocolError as exc:
            if exc.code == "truncated" or (exc.skip is None and not reader.resync()):
                return


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(VALID), st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=8),
       st.integers(0, 400))
def test_fuzz_mutated_frames(frame, flips, cut):
    data = bytearray(frame)
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    with contextlib.suppress(P.ProtocolError):
        P.decode_bytes(bytes(data[: max(cut, len(data) - cut)]))
    _decode_stream(bytes(data))


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data):
    with contextlib.suppress(P.ProtocolError):
        P.decode_bytes(data)
    _decode_stream(data)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_random_json_bodies(body):
    frame = P.HEADER.pack(P.MAGIC, P.PROTOCOL_VERSION, P.Generate.KIND, 0, len(body), 0) + body
    with contextlib.suppress(P.ProtocolError):
        P.decode_bytes(frame)


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from([n for n, _ in P.MESH_ARRAYS.items()]), st.sampled_from(sorted(P.ALLOWED_DTYPES)),
       st.lists(st.one_of(st.integers(0, 2**40), st.sampled_from([2**26, 2**21, 0, 1])), max_size=9),
       st.binary(max_size=64))
def test_fuzz_array_specs_never_escape_as_other_errors(name, dtype, shape, payload):
    """Crafted shapes (products past 2**63, zero-size axes, too many axes) are protocol errors, not crashes."""
    head = json.dumps({"mesh_index": 0, "array": name, "offset": 0,
                       "arrays": [{"name": "data", "dtype": dtype, "shape": shape}]}).encode()
    frame = P.HEADER.pack(P.MAGIC, P.PROTOCOL_VERSION, P.MeshChunk.KIND, 0, len(head), len(payload)) + head + payload
    with contextlib.suppress(P.ProtocolError):
        P.decode_bytes(frame)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.integers(-2**40, 2**40), st.booleans(), st.text(max_size=3)),
       st.one_of(st.integers(-2**40, 2**40), st.none()),
       st.dictionaries(st.sampled_from(["vertices", "faces", "normals", "colors", "x"]), st.integers(0, 2**32)))
def test_fuzz_mesh_headers_bound_what_a_client_allocates(n_vertices, n_faces, checksums):
    start = P.MeshStart(n_vertices=n_vertices, n_faces=n_faces, checksums=checksums)  # type: ignore[arg-type]
    try:
        assembly = P.MeshAssembly(start)
    except P.ProtocolError:
        return
    assert 0 <= start.n_vertices <= P.MAX_MESH_ROWS and 0 <= start.n_faces <= P.MAX_MESH_ROWS
    assert assembly.arrays == {}
