"""Normal-map conventions and encoding.

Camera-space unit normals are stored as [H, W, 3] float arrays with +X right, +Y up, +Z toward the
viewer (the OpenGL / Blender tangent-space convention when the object faces the camera). Colours are
``(n + 1) / 2``; the DirectX convention flips green. Object space here means Blender's frame for an object
facing -Y: (x, y, z)_object = (n_x, -n_z, n_y).
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

CONVENTIONS = ("opengl", "directx", "object")


def to_colors(normals: np.ndarray, convention: str = "opengl") -> np.ndarray:
    """Unit normals [H, W, 3] -> colours in [0, 1] for ``convention``."""
    n = np.asarray(normals, dtype=np.float32)
    if convention == "directx":
        n = n * np.array([1.0, -1.0, 1.0], np.float32)
    elif convention == "object":
        n = np.stack([n[..., 0], -n[..., 2], n[..., 1]], axis=-1)
    elif convention != "opengl":
        raise ValueError(f"unknown normal-map convention {convention!r}")
    return np.clip((n + 1.0) * 0.5, 0.0, 1.0)


def from_colors(colors: np.ndarray, convention: str = "opengl") -> np.ndarray:
    """Colours in [0, 1] [H, W, 3] -> unit normals in the camera convention (inverse of ``to_colors``)."""
    n = np.asarray(colors, dtype=np.float32)[..., :3] * 2.0 - 1.0
    if convention == "directx":
        n = n * np.array([1.0, -1.0, 1.0], np.float32)
    elif convention == "object":
        n = np.stack([n[..., 0], n[..., 2], -n[..., 1]], axis=-1)
    elif convention != "opengl":
        raise ValueError(f"unknown normal-map convention {convention!r}")
    return normalize(n)


def normalize(n: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Scale vectors along the last axis to unit length (zero vectors become +Z)."""
    length = np.linalg.norm(n, axis=-1, keepdims=True)
    out = n / np.maximum(length, eps)
    flat = length[..., 0] < eps
    out[flat] = (0.0, 0.0, 1.0)
    return out.astype(np.float32)


def to_rgba16(normals: np.ndarray, mask: np.ndarray, convention: str = "opengl") -> np.ndarray:
    """Unit normals + mask -> uint16 RGBA [H, W, 4]; the background is the flat normal, alpha the mask."""
    n = np.where(mask[..., None], normals, np.array([0.0, 0.0, 1.0], np.float32))
    rgb = to_colors(n, convention)
    rgba = np.concatenate([rgb, mask[..., None].astype(np.float32)], axis=-1)
    return np.round(rgba * 65535.0).astype(np.uint16)


def encode_png16(pixels: np.ndarray) -> bytes:
    """Encode uint16 [H, W, 3|4] pixels as a 16-bit PNG (Pillow cannot write 16-bit colour PNGs)."""
    h, w, c = pixels.shape
    color_type = {3: 2, 4: 6}[c]
    rows = np.ascontiguousarray(pixels.astype(">u2")).view(np.uint8).reshape(h, w * c * 2)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1)  # filter type 0 on every row
    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    return b"".join([b"\x89PNG\r\n\x1a\n", _chunk(b"IHDR", ihdr),
                     _chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)), _chunk(b"IEND", b"")])


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def decode_png16(data: bytes) -> np.ndarray:
    """Decode a 16-bit RGB/RGBA PNG (as written by ``encode_png16`` or other tools) to uint16 [H, W, C]."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file")
    pos, idat, header = 8, [], None
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos: pos + 8])
        body = data[pos + 8: pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    if header is None or header[2] != 16 or header[3] not in (2, 6) or header[6] != 0:
        raise ValueError("only non-interlaced 16-bit RGB/RGBA PNGs are supported")
    w, h, c = header[0], header[1], {2: 3, 6: 4}[header[3]]
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(h, 1 + w * c * 2)
    rows = _unfilter(raw[:, 1:].astype(np.int32), raw[:, 0], bpp=c * 2)
    return rows.astype(np.uint8).view(">u2").reshape(h, w, c).astype(np.uint16)


def _unfilter(rows: np.ndarray, filters: np.ndarray, bpp: int) -> np.ndarray:
    out = np.zeros_like(rows)
    prev = np.zeros(rows.shape[1], np.int32)
    for y in range(rows.shape[0]):
        out[y] = _unfilter_row(rows[y], prev, int(filters[y]), bpp)
        prev = out[y]
    return out


def _unfilter_row(cur: np.ndarray, prev: np.ndarray, kind: int, bpp: int) -> np.ndarray:
    if kind == 0:
        return cur
    if kind == 2:
        return (cur + prev) & 0xFF
    row = cur.copy()
    for x in range(len(row)):  # Sub, Average and Paeth depend on the bytes just decoded
        left = row[x - bpp] if x >= bpp else 0
        up, ul = prev[x], (prev[x - bpp] if x >= bpp else 0)
        if kind == 1:
            pred = left
        elif kind == 3:
            pred = (left + up) // 2
        else:
            p = left + up - ul
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - ul)
            pred = left if pa <= pb and pa <= pc else (up if pb <= pc else ul)
        row[x] = (row[x] + pred) & 0xFF
    return row
