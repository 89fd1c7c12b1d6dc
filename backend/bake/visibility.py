"""Which texels the input view sees: the texel's surface point projects inside the picture, in front of
whatever else the rasterizer draws there, on a surface turned towards the camera, onto the foreground mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..camera import Camera, make_camera

RASTER_SIDE = 1024
"The depth test renders at most this many pixels along the larger side (the picture itself may be larger)."
MIN_COS = 0.03
"Surfaces seen more obliquely than about 88 degrees take no colour from the picture (it would smear)."
DEPTH_SLACK = 0.004
"Depth tolerance as a fraction of the mesh's size, plus a few pixel footprints (the surface's own slope)."


@dataclass
class Visibility:
    seen: np.ndarray  # [K] bool
    pixels: np.ndarray  # [K, 2] float64 (u, v) in the camera's picture, pixel centres at +0.5
    cos: np.ndarray  # [K] float32, normal . direction to the camera (normals turned outwards)


def raster_camera(camera: Camera, side: int = RASTER_SIDE) -> Camera:
    """``camera`` with the same view at most ``side`` pixels along its larger side."""
    scale = min(1.0, side / max(camera.width, camera.height))
    if scale == 1.0:
        return camera
    width, height = max(1, round(camera.width * scale)), max(1, round(camera.height * scale))
    return make_camera(camera.rotation, camera.translation, width, height, camera.fov, camera.ortho_scale,
                       camera.clip_start, camera.clip_end)


def visible_texels(points: np.ndarray, normals: np.ndarray, vertices: np.ndarray, faces: np.ndarray,
                   camera: Camera, mask: np.ndarray, device: str = "cpu") -> Visibility:
    """Visibility of texel surface points [K, 3] on faces with normals [K, 3] (world) of the mesh (vertices [V, 3],
    faces [F, 3]) from ``camera``, whose picture has the foreground ``mask`` [H, W] (camera.height x width)."""
    import torch

    from ..render.raster import rasterize_cameras

    small = raster_camera(camera)
    v = torch.tensor(np.asarray(vertices, np.float32), device=device)
    f = torch.tensor(np.asarray(faces, np.int64), device=device)
    zbuf = rasterize_cameras(v, f, [small]).depth[0].cpu().numpy()  # [h, w], inf where empty
    near = small.project(points)  # [K, 3] (u, v, depth)
    cols, rows = np.floor(near[:, 0]).astype(np.int64), np.floor(near[:, 1]).astype(np.int64)
    inside = (cols >= 0) & (cols < small.width) & (rows >= 0) & (rows < small.height) & (near[:, 2] > 0)
    cos = np.einsum("kd,kd->k", _unit(normals), _towards_camera(points, camera)).astype(np.float32)
    footprint = (1.0 if small.orthographic else near[:, 2]) / small.pixel_scale
    extent = float(np.ptp(np.asarray(vertices, np.float64), axis=0).max())
    slack = DEPTH_SLACK * extent + 3.0 * footprint / np.maximum(np.abs(cos), MIN_COS)
    depth = np.full(len(points), np.inf)
    depth[inside] = zbuf[rows[inside], cols[inside]]
    front = inside & (near[:, 2] <= depth + slack)
    if cos[front].sum() < 0.0:  # the mesh is wound inside out: its normals point in
        cos = -cos
    seen = front & (cos >= MIN_COS)  # a thin part's far side is within the slack, but turned away
    pixels = camera.project(points)[:, :2]
    pc, pr = np.floor(pixels[:, 0]).astype(np.int64), np.floor(pixels[:, 1]).astype(np.int64)
    on = seen & (pc >= 0) & (pc < camera.width) & (pr >= 0) & (pr < camera.height)
    seen = on.copy()
    seen[on] = np.asarray(mask, bool)[pr[on], pc[on]]
    return Visibility(seen, pixels, cos)


def _towards_camera(points: np.ndarray, camera: Camera) -> np.ndarray:
    """Unit directions [K, 3] from each point to the camera (the view axis reversed when orthographic)."""
    if camera.orthographic:
        return np.broadcast_to(camera.rotation[2], points.shape)  # camera +Z in world coordinates
    return _unit(camera.center - np.asarray(points, np.float64))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
