"""The wire contract between the Blender add-on and the backend process (standard library + numpy only).

This one module is imported by both sides: the backend, and the add-on inside Blender's Python (it is
bundled in the extension zip). It imports nothing else from ``backend``.

A frame is::

    header  20 bytes  struct "<4sHHIII": magic b"H3DG", protocol version, message kind, request id,
                      JSON length, payload length
    json    UTF-8 object with the message's scalar fields and an "arrays" list [{name, dtype, shape}]
    payload the arrays' raw little-endian bytes, back to back in the order of "arrays"

Big arrays (meshes) are split over several ``MeshChunk`` frames so no frame exceeds ``MAX_PAYLOAD``.
Nothing is pickled; a reader never allocates more than the limits below for one frame.
"""

from __future__ import annotations

import json
import math
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any, BinaryIO, ClassVar

import numpy as np

PROTOCOL_VERSION = 5
"""2: ``MeshTexture`` frames carry each UV-mapped mesh's own images; ``NormalMap`` is the camera-space prediction.
3: ``Generate.view_paths`` / ``view_angles``: more pictures of the same object (multi-view conditioning).
4: a mesh may carry its ``edges`` and ``corner_edge`` (``MeshStart.n_edges``), so Blender skips computing them.
5: only ``corner_edge`` travels (edges sorted by (hi, lo)); the add-on derives the edge rows from it and the faces."""
MAGIC = b"H3DG"
HEADER = struct.Struct("<4sHHIII")
MAX_JSON = 1 << 20  # 1 MiB of JSON per frame
MAX_PAYLOAD = 64 << 20  # 64 MiB of array bytes per frame
MAX_MESH_ROWS = 1 << 26  # 67 M vertices or faces per mesh (about 0.8 GiB of faces): bounds what a client allocates
CHUNK_BYTES = 8 << 20  # meshes stream in chunks of about this size
ALLOWED_DTYPES = ("<f4", "<f2", "<i4", "<u4", "<u1", "<u2", "<i8")


class ProtocolError(Exception):
    """A frame that cannot be decoded. ``skip`` is how many bytes of the stream belong to it (if known)."""

    def __init__(self, message: str, code: str = "protocol", skip: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.skip = skip
        self.request_id = 0
        "The frame's request id when its header was readable (the error then answers that request)."


# --------------------------------------------------------------------------------------------- messages


@dataclass
class Message:
    """Base of all messages. ``KIND`` is its number on the wire; ``ARRAYS`` names its array fields."""

    KIND: ClassVar[int] = 0
    ARRAYS: ClassVar[tuple[str, ...]] = ()


@dataclass
class Hello(Message):
    """Backend -> client, first frame after start: who is speaking and what it can do."""

    KIND: ClassVar[int] = 1
    protocol: int = PROTOCOL_VERSION
    "Protocol version the backend speaks."
    backend_version: str = ""
    "Version of the backend package (the add-on bundles the same version)."
    python_version: str = ""
    torch_version: str = ""
    "Empty if torch is not importable (only the relief engine then works)."
    devices: list[str] = field(default_factory=list)
    "Usable device kinds, best first, e.g. ['cuda', 'cpu']."
    engines: list[dict[str, Any]] = field(default_factory=list)
    "One dict per engine: name, label, available, weights_present, missing (list), description."
    pid: int = 0


@dataclass
class Generate(Message):
    """Client -> backend: make a mesh from an image. The image travels as encoded file bytes or a path."""

    KIND: ClassVar[int] = 2
    ARRAYS: ClassVar[tuple[str, ...]] = ("image_bytes", "normal_bytes", "mask_bytes", "view_bytes")
    engine: str = "relief"
    seed: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    "Engine parameters by name (validated by the engine)."
    image_path: str = ""
    "Path on the backend's file system; used only when image_bytes is absent."
    image_name: str = "image"
    "Display name, used for object and file names."
    normal_path: str = ""
    "Optional user-supplied normal map (path), used instead of estimating one."
    device: str = "auto"
    want_normal_map: bool = True
    "Send the predicted camera-space map (a ``NormalMap`` frame)."
    want_textures: bool = True
    "Send each UV-mapped mesh's images (``MeshTexture`` frames: tangent-space normals, base colour)."
    want_edges: bool = True
    """Send each mesh's ``corner_edge`` (``MESH_ARRAYS``): Blender then skips computing its edges, for 12
    more bytes a face on the wire (a remote backend over a slow link is better off without)."""
    image_bytes: np.ndarray | None = None
    "uint8 [n]: the encoded image file (PNG, JPEG, ...)."
    normal_bytes: np.ndarray | None = None
    "uint8 [n]: an encoded normal-map image supplied by the user."
    mask_path: str = ""
    "Optional mask image (path): white or opaque marks the object; it replaces the image's alpha."
    mask_bytes: np.ndarray | None = None
    "uint8 [n]: an encoded mask image supplied by the user (see ``mask_path``)."
    view_paths: list[str] = field(default_factory=list)
    "More views of the same object (paths on the backend's file system); the image above is the first view."
    view_angles: list[float] = field(default_factory=list)
    "Optional: one angle in degrees about the vertical axis per view, the first view first (reported back)."
    view_bytes: np.ndarray | None = None
    "uint8 [n]: more views as encoded image files, one after another; ``view_sizes`` splits them."
    view_sizes: list[int] = field(default_factory=list)
    "The byte length of each file in ``view_bytes`` (those views come after the ``view_paths`` ones)."


@dataclass
class Normals(Generate):
    """Client -> backend: only estimate the normal map (same fields as Generate)."""

    KIND: ClassVar[int] = 3


@dataclass
class Progress(Message):
    """Backend -> client: ``step`` of ``total`` in ``stage`` (total 0 means indeterminate)."""

    KIND: ClassVar[int] = 4
    stage: str = ""
    step: int = 0
    total: int = 0
    message: str = ""


@dataclass
class NormalMap(Message):
    """Backend -> client: the predicted normal map over the frame the engine worked in, in camera space
    (+X right, +Y up, +Z to the viewer; colours ``(n + 1) / 2``), RGBA uint16. It is the prediction, not a
    material texture: a UV-mapped mesh's tangent-space texture comes in a ``MeshTexture`` frame."""

    KIND: ClassVar[int] = 5
    ARRAYS: ClassVar[tuple[str, ...]] = ("pixels",)
    width: int = 0
    height: int = 0
    convention: str = "opengl"
    pixels: np.ndarray | None = None
    "uint16 [height, width, 4], top row first; alpha is the foreground mask."


@dataclass
class MeshStart(Message):
    """Backend -> client: a mesh follows in chunks; sizes and CRC32 of each whole array."""

    KIND: ClassVar[int] = 6
    mesh_index: int = 0
    name: str = ""
    n_vertices: int = 0
    n_faces: int = 0
    checksums: dict[str, int] = field(default_factory=dict)
    "Array name (``MESH_ARRAYS``: 'vertices', 'faces', optional 'normals', 'uvs', 'corner_edge') -> CRC32."
    frame: str = "blender_z_up"
    "Coordinate frame: +Z up, the object faces -Y (Blender's front view)."


@dataclass
class MeshChunk(Message):
    """Backend -> client: rows [offset, offset + len(data)) of one array of a mesh."""

    KIND: ClassVar[int] = 7
    ARRAYS: ClassVar[tuple[str, ...]] = ("data",)
    mesh_index: int = 0
    array: str = "vertices"
    offset: int = 0
    data: np.ndarray | None = None


TEXTURE_ROLES: dict[str, str] = {
    "normal": "tangent-space normal texture, uint16 RGBA: OpenGL colours (n + 1) / 2 with n = (n . T, n . B, "
              "n . N), T along increasing u, B along increasing v, N the smooth vertex normal; alpha the mask",
    "base_color": "the input image's pixels, uint8 RGBA, sRGB; alpha the mask",
}
"What a ``MeshTexture`` holds, by ``role``."


@dataclass
class MeshTexture(Message):
    """Backend -> client: an image the UVs of mesh ``mesh_index`` index, after that mesh's chunks.

    UV (0, 0) is the image's bottom-left corner, (1, 1) its top-right (u right, v up). The faces whose UV
    triangle is wound counter-clockwise take the textures; mirrored or zero-area ones (a relief's back and
    side walls) take a plain material. ``role`` is one of ``TEXTURE_ROLES``."""

    KIND: ClassVar[int] = 15
    ARRAYS: ClassVar[tuple[str, ...]] = ("pixels",)
    mesh_index: int = 0
    role: str = "normal"
    width: int = 0
    height: int = 0
    pixels: np.ndarray | None = None
    "[height, width, 4], top row first: uint16 for 'normal', uint8 for 'base_color'."


@dataclass
class Done(Message):
    """Backend -> client: the request finished; ``stats`` holds timings and counts."""

    KIND: ClassVar[int] = 8
    mesh_count: int = 0
    seconds: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)


ERROR_CODES: dict[str, str] = {
    "bad_input": "the request, a parameter or its image cannot be used",
    "unknown_engine": "no engine of that name",
    "weights_missing": "model files are absent",
    "weights_invalid": "a model file is corrupt or does not fit the network",
    "cancelled": "the client cancelled the request, or the backend dropped it while shutting down",
    "out_of_memory": "the device ran out of memory",
    "insufficient_memory": "refused before running: the predicted memory peak does not fit the device",
    "empty_result": "the model produced no geometry",
    "busy": "too many requests (or bytes) are waiting already; the request was not queued",
    "protocol": "a frame could not be decoded",
    "protocol_version": "a frame of another protocol version",
    "frame_too_large": "a frame over the size limits",
    "truncated": "the stream ended inside a frame",
    "internal": "an unexpected error in the backend (a bug: please report it)",
}
"Every ``Error.code`` the backend sends, with its meaning (adding a code keeps the protocol version)."


@dataclass
class Error(Message):
    """Backend -> client: the request (or a frame) failed. The backend keeps serving unless ``fatal``."""

    KIND: ClassVar[int] = 9
    code: str = "internal"
    "One of ``ERROR_CODES``."
    message: str = ""
    hint: str = ""
    "What the user can do about it."
    traceback: str = ""
    fatal: bool = False


@dataclass
class Cancel(Message):
    """Client -> backend: stop the request with this frame's request id at the next step.

    Only a request already running or waiting is cancelled; a Cancel for an id not sent yet is ignored."""

    KIND: ClassVar[int] = 10


@dataclass
class Shutdown(Message):
    """Client -> backend: cancel the running request, drop the waiting ones (each answered 'cancelled'), exit."""

    KIND: ClassVar[int] = 11


@dataclass
class Ping(Message):
    """Client -> backend: answered by ``Pong`` at once, even while a request runs."""

    KIND: ClassVar[int] = 12


@dataclass
class Pong(Message):
    """Backend -> client: answer to ``Ping``; ``busy`` tells whether a request is running."""

    KIND: ClassVar[int] = 13
    busy: bool = False
    seconds_since_progress: float = 0.0


@dataclass
class ReleaseModels(Message):
    """Client -> backend: drop loaded models to free memory (they reload on the next request)."""

    KIND: ClassVar[int] = 14


MESSAGE_TYPES: dict[int, type[Message]] = {
    cls.KIND: cls
    for cls in (Hello, Generate, Normals, Progress, NormalMap, MeshStart, MeshChunk, Done, Error, Cancel,
                Shutdown, Ping, Pong, ReleaseModels, MeshTexture)
}

_SCALAR_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,), "float": (int, float), "str": (str,), "bool": (bool,),
}


_FIELD_WORDS = {"int": "a whole number", "float": "a number", "str": "a string", "bool": "true or false",
                "dict": "an object", "list": "a list"}


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a bool", int: "a number", float: "a number", str: "a string", dict: "an object",
            list: "a list"}.get(type(value), type(value).__name__)


# --------------------------------------------------------------------------------------------- encoding


def encode(msg: Message, request_id: int = 0) -> list[bytes | memoryview]:
    """Encode ``msg`` as a list of buffers (header, JSON, then each array without copying)."""
    head: dict[str, Any] = {}
    specs: list[dict[str, Any]] = []
    buffers: list[memoryview] = []
    for f in fields(msg):
        value = getattr(msg, f.name)
        if f.name not in msg.ARRAYS:
            head[f.name] = value
        elif value is not None:
            arr = _wire_array(value)
            specs.append({"name": f.name, "dtype": wire_dtype(arr.dtype), "shape": list(arr.shape)})
            buffers.append(_byte_view(arr))
    head["arrays"] = specs
    text = json.dumps(head, separators=(",", ":")).encode("utf-8")
    payload_len = sum(b.nbytes for b in buffers)
    if len(text) > MAX_JSON or payload_len > MAX_PAYLOAD:
        raise ProtocolError(f"{type(msg).__name__} frame too large ({len(text)} + {payload_len} bytes)")
    header = HEADER.pack(MAGIC, PROTOCOL_VERSION, msg.KIND, request_id & 0xFFFFFFFF, len(text), payload_len)
    return [header, text, *buffers]


def _byte_view(arr: np.ndarray) -> memoryview:
    """The bytes of a C-contiguous array without a copy, zero rows included (``memoryview.cast`` refuses a
    shape with a zero in it)."""
    return memoryview(arr.reshape(-1).view(np.uint8))


def encode_bytes(msg: Message, request_id: int = 0) -> bytes:
    """Encode ``msg`` into one ``bytes`` object (tests, small messages)."""
    return b"".join(bytes(b) for b in encode(msg, request_id))


def _wire_array(value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and not _little_endian()):
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    if wire_dtype(arr.dtype) not in ALLOWED_DTYPES:
        raise ProtocolError(f"dtype {arr.dtype} cannot travel on the wire")
    return np.ascontiguousarray(arr)


def wire_dtype(dtype: np.dtype) -> str:
    """The dtype's name on the wire: always with an explicit little-endian mark ('<u1', '<f4')."""
    return dtype.str.replace("|", "<")


def _little_endian() -> bool:
    return np.little_endian


# --------------------------------------------------------------------------------------------- decoding


def parse_header(raw: bytes) -> tuple[int, int, int, int]:
    """Check a 20-byte frame header; return (kind, request_id, json_len, payload_len)."""
    magic, version, kind, request_id, json_len, payload_len = HEADER.unpack(raw)
    if magic != MAGIC:
        raise ProtocolError(f"not a frame (magic {magic!r})", code="protocol")
    skip = json_len + payload_len
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"protocol version {version} is not supported (this side speaks {PROTOCOL_VERSION})",
            code="protocol_version", skip=skip if skip <= MAX_JSON + MAX_PAYLOAD else None,
        )
    if json_len > MAX_JSON or payload_len > MAX_PAYLOAD:
        raise ProtocolError(f"frame too large ({json_len} + {payload_len} bytes)", code="frame_too_large")
    if kind not in MESSAGE_TYPES:
        raise ProtocolError(f"unknown message kind {kind}", skip=skip)
    return kind, request_id, json_len, payload_len


def decode_body(kind: int, body: bytes | bytearray, payload: bytes | bytearray) -> Message:
    """Build the message of ``kind`` from its JSON ``body`` and array ``payload``."""
    cls = MESSAGE_TYPES[kind]
    try:
        head = json.loads(bytes(body).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"bad JSON in {cls.__name__} frame: {exc}") from None
    if not isinstance(head, dict):
        raise ProtocolError(f"{cls.__name__} frame JSON is not an object")
    kwargs = _scalar_fields(cls, head)
    kwargs.update(_array_fields(cls, head.get("arrays", []), payload))
    return cls(**kwargs)


def _scalar_fields(cls: type[Message], head: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(cls):
        if f.name in cls.ARRAYS or f.name not in head:
            continue  # missing fields keep their defaults; unknown extra fields are ignored
        value = head[f.name]
        expected = _SCALAR_TYPES.get(str(f.type))
        if str(f.type).startswith(("dict", "list")):
            expected = (dict,) if str(f.type).startswith("dict") else (list,)
        if expected and (not isinstance(value, expected) or (bool not in expected and isinstance(value, bool))):
            wanted = _FIELD_WORDS.get(str(f.type).split("[")[0], str(f.type))
            raise ProtocolError(f"{cls.__name__}.{f.name} must be {wanted}, not {_json_kind(value)}",
                                code="bad_input")
        out[f.name] = value
    return out


def _array_fields(cls: type[Message], specs: Any, payload: bytes | bytearray) -> dict[str, np.ndarray]:
    if not isinstance(specs, list):
        raise ProtocolError("'arrays' must be a list")
    out: dict[str, np.ndarray] = {}
    offset = 0
    for spec in specs:
        name, dtype, shape = _check_spec(cls, spec)
        nbytes = math.prod(shape) * dtype.itemsize  # Python ints: no int64 wrap-around for crafted shapes
        if offset + nbytes > len(payload):
            raise ProtocolError(f"array '{name}' runs past the payload")
        out[name] = np.frombuffer(payload, dtype=dtype, count=nbytes // dtype.itemsize, offset=offset).reshape(shape)
        offset += nbytes
    if offset != len(payload):
        raise ProtocolError(f"payload has {len(payload) - offset} unexplained bytes")
    return out


def _check_spec(cls: type[Message], spec: Any) -> tuple[str, np.dtype, tuple[int, ...]]:
    if not isinstance(spec, dict):
        raise ProtocolError("array spec must be an object")
    name, dtype, shape = spec.get("name"), spec.get("dtype"), spec.get("shape")
    if name not in cls.ARRAYS:
        raise ProtocolError(f"{cls.__name__} has no array field {name!r}")
    if dtype not in ALLOWED_DTYPES:
        raise ProtocolError(f"array dtype {dtype!r} not allowed")
    if (not isinstance(shape, list) or len(shape) > 8
            or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_PAYLOAD for s in shape)
            or math.prod(max(s, 1) for s in shape) > MAX_PAYLOAD):  # numpy refuses even empty huge shapes
        raise ProtocolError(f"bad shape for array {name!r}")
    return name, np.dtype(dtype), tuple(shape)


def decode_bytes(data: bytes) -> tuple[Message, int]:
    """Decode one whole frame held in memory; returns (message, request_id)."""
    if len(data) < HEADER.size:
        raise ProtocolError("truncated header")
    kind, request_id, json_len, payload_len = parse_header(data[: HEADER.size])
    end = HEADER.size + json_len + payload_len
    if len(data) != end:
        raise ProtocolError(f"frame length {len(data)} does not match its header ({end})")
    body = data[HEADER.size: HEADER.size + json_len]
    return decode_body(kind, body, data[HEADER.size + json_len: end]), request_id


# --------------------------------------------------------------------------------------------- streams


class FrameReader:
    """Reads frames from a binary stream. ``read`` returns None at a clean end of stream.

    On a bad frame it raises ``ProtocolError`` after consuming the frame when its length is known and
    bounded, so the caller can report the error and keep reading; ``resync`` scans to the next magic.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._pushback = b""
        self.last_size = 0
        "Bytes of the last frame ``read`` returned (header, JSON and payload)."

    def read(self) -> tuple[Message, int] | None:
        raw = self._read_exact(HEADER.size, allow_eof=True)
        if raw is None:
            return None
        try:
            kind, request_id, json_len, payload_len = parse_header(raw)
        except ProtocolError as exc:
            if exc.skip is not None:
                self._discard(exc.skip)
            elif raw[:4] != MAGIC:
                self._pushback = bytes(raw[1:]) + self._pushback  # a frame may start inside these bytes
            raise
        body = self._read_exact(json_len)
        payload = self._read_exact(payload_len)
        assert body is not None and payload is not None
        self.last_size = HEADER.size + json_len + payload_len
        try:
            return decode_body(kind, body, payload), request_id
        except ProtocolError as exc:  # the whole frame is consumed: nothing to skip, the next frame follows
            exc.skip, exc.request_id = 0, request_id
            raise

    def resync(self, limit: int = MAX_JSON + MAX_PAYLOAD) -> bool:
        """Skip bytes until the next magic (left unread). False if the stream ended first."""
        window = b""
        for _ in range(limit):
            byte = self._next_byte()
            if not byte:
                return False
            window = (window + byte)[-len(MAGIC):]
            if window == MAGIC:
                self._pushback = MAGIC + self._pushback
                return True
        return False

    def _next_byte(self) -> bytes:
        if self._pushback:
            byte, self._pushback = self._pushback[:1], self._pushback[1:]
            return byte
        return self._stream.read(1)

    def _read_exact(self, n: int, allow_eof: bool = False) -> bytearray | None:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        if self._pushback:
            k = min(n, len(self._pushback))
            view[:k] = self._pushback[:k]
            self._pushback = self._pushback[k:]
            got = k
        while got < n:
            k = self._stream.readinto(view[got:])  # type: ignore[attr-defined]
            if not k:
                if allow_eof and got == 0:
                    return None
                raise ProtocolError(f"stream ended inside a frame ({got} of {n} bytes)", code="truncated")
            got += k
        return buf

    def _discard(self, n: int) -> None:
        while n > 0:
            chunk = self._stream.read(min(n, 1 << 20))
            if not chunk:
                return
            n -= len(chunk)


class FrameWriter:
    """Writes frames to a binary stream; safe to share between threads."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, msg: Message, request_id: int = 0) -> None:
        parts = encode(msg, request_id)
        with self._lock:
            for part in parts:
                self._stream.write(part)
            self._stream.flush()


# --------------------------------------------------------------------------------------------- meshes

MESH_ARRAYS = {"vertices": ("<f4", 3), "faces": ("<i4", 3), "normals": ("<f4", 3), "uvs": ("<f4", 2),
               "corner_edge": ("<i4", 3)}
"""Per-vertex rows: vertices, normals, uvs; per-face rows: faces, corner_edge.
``corner_edge`` (optional): ``corner_edge[f, j]`` is the row, in the mesh's edge list, of the edge from
faces[f, j] to faces[f, (j + 1) % 3], -1 on degenerate faces (a vertex twice, which the add-on drops). The
edge list itself does not travel: its rows are the mesh's unique edges (lo, hi), lo < hi, strictly
increasing by (hi, lo) (the order of the pairs read as little-endian int64), each used by a corner, so the
add-on rebuilds it from the faces and checks it (``blender_addon/mesh_edges.py``), computing its own edges
when it does not hold (``backend/mesh/edges.py`` makes it)."""


def mesh_frames(index: int, name: str, arrays: dict[str, np.ndarray],
                chunk_bytes: int = CHUNK_BYTES) -> Iterator[Message]:
    """The MeshStart and MeshChunk messages that carry one mesh (vertices and faces required)."""
    wire = {k: _mesh_array(k, v) for k, v in arrays.items() if v is not None}
    yield MeshStart(mesh_index=index, name=name, n_vertices=len(wire["vertices"]), n_faces=len(wire["faces"]),
                    checksums={k: zlib.crc32(_byte_view(v)) for k, v in wire.items()})
    for key, arr in wire.items():
        rows = max(1, chunk_bytes // max(1, arr[0:1].nbytes or 1))
        for start in range(0, len(arr), rows):
            yield MeshChunk(mesh_index=index, array=key, offset=start, data=arr[start: start + rows])


def _mesh_array(key: str, value: np.ndarray) -> np.ndarray:
    if key not in MESH_ARRAYS:
        raise ValueError(f"unknown mesh array {key!r}")
    dtype, width = MESH_ARRAYS[key]
    arr = np.ascontiguousarray(value, dtype=np.dtype(dtype))
    if arr.ndim != 2 or arr.shape[1] != width:
        raise ValueError(f"mesh array {key!r} must be [n, {width}], got {arr.shape}")
    return arr


@dataclass
class MeshAssembly:
    """Collects the chunks of one mesh and checks it when complete (sizes, CRCs, face indices)."""

    start: MeshStart
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    filled: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for what in ("n_vertices", "n_faces"):
            n = getattr(self.start, what)
            if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= MAX_MESH_ROWS:
                raise ProtocolError(f"mesh {what} {n!r} out of range (0..{MAX_MESH_ROWS})")
        if not isinstance(self.start.checksums, dict) or not set(self.start.checksums) <= set(MESH_ARRAYS) \
                or not {"vertices", "faces"} <= set(self.start.checksums):
            raise ProtocolError("a mesh must list vertices and faces (normals, uvs, corner_edge optional), "
                                "nothing else")

    def rows(self, key: str) -> int:
        """How many rows array ``key`` has."""
        return self.start.n_faces if key in ("faces", "corner_edge") else self.start.n_vertices

    def add(self, chunk: MeshChunk) -> None:
        key = chunk.array
        if key not in self.start.checksums or key not in MESH_ARRAYS or chunk.data is None:
            raise ProtocolError(f"unexpected mesh array {key!r}")
        dtype, width = MESH_ARRAYS[key]
        rows = self.rows(key)
        target = self.arrays.get(key)
        if target is None:
            target = self.arrays[key] = np.empty((rows, width), dtype=np.dtype(dtype))
        data = chunk.data
        if data.dtype != target.dtype or data.ndim != 2 or data.shape[1] != width:
            raise ProtocolError(f"mesh chunk {key!r} has the wrong dtype or shape")
        if chunk.offset < 0 or chunk.offset + len(data) > rows:
            raise ProtocolError(f"mesh chunk {key!r} rows out of range")
        target[chunk.offset: chunk.offset + len(data)] = data
        self.filled[key] = self.filled.get(key, 0) + len(data)

    def finish(self) -> dict[str, np.ndarray]:
        """Return the arrays once all rows arrived and check out; raise ``ProtocolError`` otherwise."""
        for key, crc in self.start.checksums.items():
            rows = self.rows(key)
            arr = self.arrays.get(key)
            if arr is None and rows == 0:
                arr = self.arrays[key] = np.empty((0, MESH_ARRAYS[key][1]), np.dtype(MESH_ARRAYS[key][0]))
            if arr is None or self.filled.get(key, 0) != rows:
                raise ProtocolError(f"mesh array {key!r} incomplete")
            if zlib.crc32(_byte_view(arr)) != crc:
                raise ProtocolError(f"mesh array {key!r} failed its checksum")
        faces = self.arrays["faces"]
        if faces.size and (faces.min() < 0 or faces.max() >= self.start.n_vertices):
            raise ProtocolError("mesh faces index past the vertex array")
        return self.arrays
