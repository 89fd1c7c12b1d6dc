"""A small numpy z-buffer rasterizer: per-pixel depth, mask and camera-space normals of a mesh.

Labels, not pictures: every value comes from the geometry and the camera (camera.py), so the normal map is
exact in the project's convention (+X right, +Y up, +Z towards the viewer, stored as (n + 1) / 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .camera import Camera
from .mesh import Mesh


@dataclass(frozen=True)
class Frame:
    mask: np.ndarray  # [H, W] bool
    depth: np.ndarray  # [H, W] float32: distance along the view axis (-z_cam), 0 on the background
    normals: np.ndarray  # [H, W, 3] float32 camera-space unit normals, 0 on the background


def rasterize(mesh: Mesh, camera: Camera) -> Frame:
    h, w = camera.height, camera.width
    cam = camera.to_camera(mesh.vertices.astype(np.float64))  # [V, 3]
    screen = camera.project(cam)  # [V, 2]
    tri = mesh.faces
    pix, face, bary = _coverage(screen[tri], w, h)  # per (pixel, face) sample
    inv_depth = 1.0 / np.maximum(-cam[tri][face, :, 2], 1e-9)  # [S, 3]
    if camera.orthographic:
        depth = (bary * -cam[tri][face, :, 2]).sum(1)
        weights = bary
    else:
        depth = 1.0 / (bary * inv_depth).sum(1)  # perspective-correct interpolation through 1/z
        weights = bary * inv_depth * depth[:, None]
    keep = depth > 1e-6
    pix, face, weights, depth = pix[keep], face[keep], weights[keep], depth[keep]
    order = np.lexsort((depth, pix))  # per pixel, nearest first
    first = order[np.r_[True, pix[order][1:] != pix[order][:-1]]] if len(order) else order
    vertex_normals = camera.world_to_camera[:3, :3] @ _vertex_normals(mesh).T  # [3, V]
    n = (weights[first, :, None] * vertex_normals.T[tri[face[first]]]).sum(1)  # [P, 3]
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    mask, depth_map, normals = np.zeros(h * w, bool), np.zeros(h * w, np.float32), np.zeros((h * w, 3), np.float32)
    mask[pix[first]], depth_map[pix[first]], normals[pix[first]] = True, depth[first], n
    return Frame(mask.reshape(h, w), depth_map.reshape(h, w), normals.reshape(h, w, 3))


def _coverage(tri: np.ndarray, w: int, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel centres inside each screen triangle [F, 3, 2]: flat pixel index, face index, barycentrics [S, 3]."""
    lo = np.clip(np.ceil(tri.min(1) - 0.5), 0, [w, h]).astype(np.int64)  # first pixel centre >= min
    hi = np.clip(np.floor(tri.max(1) - 0.5), -1, [w - 1, h - 1]).astype(np.int64)
    span = np.maximum(hi - lo + 1, 0)  # [F, 2]
    count = span[:, 0] * span[:, 1]
    face = np.repeat(np.arange(len(tri)), count)
    local = np.arange(len(face)) - np.repeat(np.cumsum(count) - count, count)
    px = lo[face, 0] + local % np.maximum(span[face, 0], 1)
    py = lo[face, 1] + local // np.maximum(span[face, 0], 1)
    x, y = px + 0.5, py + 0.5
    a, b, c = tri[face, 0], tri[face, 1], tri[face, 2]
    w0 = (c[:, 0] - b[:, 0]) * (y - b[:, 1]) - (c[:, 1] - b[:, 1]) * (x - b[:, 0])
    w1 = (a[:, 0] - c[:, 0]) * (y - c[:, 1]) - (a[:, 1] - c[:, 1]) * (x - c[:, 0])
    w2 = (b[:, 0] - a[:, 0]) * (y - a[:, 1]) - (b[:, 1] - a[:, 1]) * (x - a[:, 0])
    total = w0 + w1 + w2
    inside = (total != 0) & (((w0 >= 0) & (w1 >= 0) & (w2 >= 0)) | ((w0 <= 0) & (w1 <= 0) & (w2 <= 0)))
    bary = np.stack([w0, w1, w2], 1)[inside] / total[inside, None]
    return (py * w + px)[inside], face[inside], bary


def _vertex_normals(mesh: Mesh) -> np.ndarray:
    """[V, 3] area-weighted vertex normals (world)."""
    t = mesh.triangles()
    face_n = np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])  # length = 2 * area
    out = np.zeros((len(mesh.vertices), 3))
    for k in range(3):
        np.add.at(out, mesh.faces[:, k], face_n)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def encode_normals(frame: Frame) -> np.ndarray:
    """[H, W, 3] uint8 (n + 1) / 2 * 255; the background is (0, 0, 0) (the mask says where it is)."""
    rgb = np.round((frame.normals + 1.0) / 2.0 * 255.0).astype(np.uint8)
    rgb[~frame.mask] = 0
    return rgb
