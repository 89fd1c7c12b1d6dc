"""Conditioning views through the project's one camera (backend/camera.py) and one rasterizer (backend/render).

Labels, not pictures: masks, depth and camera-space normal maps come from the geometry and the camera, so
the normal map is exact in the one convention (+X right, +Y up, +Z towards the viewer, stored as
(n + 1) / 2, what NiRNE outputs). Cameras are stored as ``Camera.to_dict()``, which carries the Blender
camera settings (synthesis/blender/render_rgb.py places its camera from them) and the glTF camera.

torch is imported inside ``render_views`` only: importing this module costs nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from backend.camera import Camera, look_at, make_camera
from backend.mesh.cleanup import vertex_normals

from .mesh import Mesh

NORMAL_MODES = ("smooth", "flat")
"smooth: area-weighted vertex normals interpolated across faces; flat: each face's own normal."


@dataclass(frozen=True)
class Views:
    """K views of one mesh, all of one size."""

    mask: np.ndarray  # [K, H, W] bool
    depth: np.ndarray  # [K, H, W] float32: distance along the view axis (-z_cam), 0 on the background
    normals: np.ndarray  # [K, H, W, 3] float32 camera-space unit normals, 0 on the background


def orbit_cameras(rng: np.random.Generator, count: int, size: int, fov_deg: float = 40.0,
                  elevation_deg: tuple[float, float] = (-10.0, 40.0), radius: float = 0.8) -> list[Camera]:
    """``count`` square perspective cameras around the origin, evenly spread in azimuth from a random start,
    each at a random elevation, far enough that a sphere of ``radius`` (the unit cube's content) fills the view."""
    fov = math.radians(fov_deg)
    distance = radius / math.sin(fov / 2.0)
    start = rng.uniform(0.0, 2 * math.pi)
    cameras = []
    for k in range(count):
        azimuth = start + 2 * math.pi * k / count
        elevation = math.radians(rng.uniform(*elevation_deg))
        eye = distance * np.array([math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth),
                                   math.sin(elevation)])
        rotation, translation = look_at(eye, np.zeros(3))
        cameras.append(make_camera(rotation, translation, size, size, fov, clip_start=0.05,
                                   clip_end=2.0 * distance + 2.0))
    return cameras


def bounding_radius(mesh: Mesh) -> float:
    """The radius of the smallest origin-centred sphere holding the mesh (its bounding box is centred there)."""
    return float(np.linalg.norm(mesh.vertices, axis=1).max()) if len(mesh.vertices) else 0.5


def render_views(mesh: Mesh, cameras: list[Camera], normals: str = "smooth") -> Views:
    """Rasterize ``mesh`` from every camera (one size and projection) in one batch."""
    import torch

    from backend.render.raster import camera_tensors, rasterize_cameras, to_camera
    from backend.render.shade import normal_image

    if normals not in NORMAL_MODES:
        raise ValueError(f"normals must be one of {NORMAL_MODES}, not {normals!r}")
    v = torch.from_numpy(np.ascontiguousarray(mesh.vertices, np.float32))  # [V, 3]
    f = torch.from_numpy(np.ascontiguousarray(mesh.faces, np.int64))  # [F, 3]
    raster = rasterize_cameras(v, f, cameras)
    rotation, translation, _ = camera_tensors(cameras)
    cam_vertices = to_camera(v, rotation, translation)  # [K, V, 3]
    cam_normals = None
    if normals == "smooth":
        world = torch.from_numpy(vertex_normals(mesh.vertices.astype(np.float64), mesh.faces))  # [V, 3]
        cam_normals = torch.einsum("bij,vj->bvi", rotation, world.float())  # [K, V, 3]
    # Smooth normals of a closed, outward mesh are never flipped: near silhouettes they may face slightly
    # away from the viewer, and that is the surface's true normal there.
    image = normal_image(raster, cam_vertices, f, cam_normals, two_sided=normals == "flat",
                         perspective=not cameras[0].orthographic)
    mask = raster.mask
    depth = torch.where(mask, raster.depth, torch.zeros_like(raster.depth))
    return Views(mask.numpy(), depth.numpy().astype(np.float32), image.numpy().astype(np.float32))


def encode_normals(normals: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Unit normals [..., 3] -> uint8 (n + 1) / 2 * 255; the background is (0, 0, 0) (the mask says where it is)."""
    rgb = np.round((np.clip(normals, -1.0, 1.0) + 1.0) / 2.0 * 255.0).astype(np.uint8)
    rgb[~mask] = 0
    return rgb
