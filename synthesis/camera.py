"""The synthesis renderer's camera, kept as a small JSON so it maps onto backend/camera.py at merge.

Camera frame: +X right, +Y up, +Z towards the viewer (the camera looks along -Z), which is Blender's and
OpenGL's camera and the normal-map convention (DESIGN.md). World frame: Blender's, +Z up. Images have
their top row first; pixel (row i, column j) has its centre at (x, y) = (j + 0.5, i + 0.5) pixels.

JSON fields (``to_json``): ``model`` ("perspective" | "orthographic"), ``width``, ``height``, ``fov_y_deg``
(perspective: full vertical field of view) or ``ortho_height`` (orthographic: the view's height in world
units), ``fx``, ``fy``, ``cx``, ``cy`` (pixels; perspective: u = cx + fx * x / -z, v = cy - fy * y / -z
for a camera-space point (x, y, z)), ``world_to_camera`` and ``camera_to_world`` (4x4 row-major, column
vectors: p_cam = R p_world + t).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Camera:
    width: int
    height: int
    world_to_camera: np.ndarray  # [4, 4] float64
    fov_y_deg: float = 40.0
    orthographic: bool = False
    ortho_height: float = 1.0

    @property
    def focal(self) -> float:
        """Pixels per unit of x/-z (perspective) or per world unit (orthographic)."""
        if self.orthographic:
            return self.height / self.ortho_height
        return (self.height / 2.0) / np.tan(np.radians(self.fov_y_deg) / 2.0)

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """World points [N, 3] -> camera space [N, 3]."""
        r, t = self.world_to_camera[:3, :3], self.world_to_camera[:3, 3]
        return points @ r.T + t

    def project(self, cam_points: np.ndarray) -> np.ndarray:
        """Camera-space points [N, 3] -> pixel coordinates [N, 2] (x right, y down)."""
        f = self.focal
        depth = np.ones(len(cam_points)) if self.orthographic else np.maximum(-cam_points[:, 2], 1e-9)
        return np.stack([self.width / 2.0 + f * cam_points[:, 0] / depth,
                         self.height / 2.0 - f * cam_points[:, 1] / depth], 1)

    def to_json(self) -> dict[str, Any]:
        f = float(self.focal)
        lens = {"ortho_height": self.ortho_height} if self.orthographic else {"fov_y_deg": self.fov_y_deg}
        return {"model": "orthographic" if self.orthographic else "perspective", "width": self.width,
                "height": self.height, **lens, "fx": f, "fy": f, "cx": self.width / 2.0, "cy": self.height / 2.0,
                "world_to_camera": self.world_to_camera.tolist(),
                "camera_to_world": np.linalg.inv(self.world_to_camera).tolist()}


def look_at(eye: np.ndarray, target: np.ndarray, up: tuple[float, float, float] = (0.0, 0.0, 1.0)) -> np.ndarray:
    """[4, 4] world->camera matrix of a camera at ``eye`` looking at ``target`` with +Y as close to ``up``."""
    forward = np.asarray(target, np.float64) - eye
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, np.asarray(up, np.float64))
    if np.linalg.norm(right) < 1e-9:  # looking straight up or down: any right will do
        right = np.cross(forward, np.array([0.0, 1.0, 0.0]))
    right = right / np.linalg.norm(right)
    z = -forward
    y = np.cross(z, right)
    rotation = np.stack([right, y, z])  # rows: the camera axes in world coordinates
    m = np.eye(4)
    m[:3, :3] = rotation
    m[:3, 3] = -rotation @ eye
    return m


def orbit_cameras(rng: np.random.Generator, count: int, size: int, fov_y_deg: float = 40.0,
                  elevation_deg: tuple[float, float] = (-10.0, 40.0), radius: float = 0.8) -> list[Camera]:
    """``count`` perspective cameras around the origin, evenly spread in azimuth from a random start, each at
    a random elevation, far enough that a sphere of ``radius`` (the unit cube's content) fills the view."""
    distance = radius / np.sin(np.radians(fov_y_deg) / 2.0)
    start = rng.uniform(0.0, 2 * np.pi)
    cams = []
    for k in range(count):
        azimuth = start + 2 * np.pi * k / count
        elevation = np.radians(rng.uniform(*elevation_deg))
        eye = distance * np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                                   np.sin(elevation)])
        cams.append(Camera(size, size, look_at(eye, np.zeros(3)), fov_y_deg))
    return cams
