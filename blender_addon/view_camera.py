"""The result's estimated view (no bpy): the camera the backend sends in ``Done.stats["camera"]``, and where
an object goes so that it overlays the picture it was made from.

The camera follows the backend's one convention (``backend/camera.py``): ``x_cam = R @ x_world + t``,
camera +X right, +Y up, looking down -Z, pixel (u, v) from the top-left corner, ``fov`` across the larger
image side (0: orthographic, ``ortho_scale`` across the larger side). Its world is the mesh's own frame.

A reference-image empty shows its picture in its local XY plane, facing +Z: the larger side is
``empty_display_size`` long, ``empty_image_offset`` (default (-0.5, -0.5): centred) moves it. Seen along
the empty's -Z, the picture's pixel (u, v) is at local ``(x0 + u * q, y0 + (H - v) * q, 0)``, ``q`` the
local size of a pixel. Its viewpoint is that view: orthographic, or for a perspective camera the point on
the empty's +Z axis from which the picture fills the camera's field of view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_SIDE = 16384
SENSOR_WIDTH_MM = 36.0
"Blender's default sensor width; with sensor_fit 'AUTO' it spans the larger image side."


class BadCamera(ValueError):
    """The backend's camera description is unusable (the object is then placed as without one)."""


@dataclass(frozen=True)
class ViewCamera:
    rotation: np.ndarray  # [3, 3] world (mesh frame) -> camera
    translation: np.ndarray  # [3]
    width: int
    height: int
    fov: float  # radians across the larger side; 0 = orthographic
    ortho_scale: float
    clip_start: float
    clip_end: float

    @property
    def orthographic(self) -> bool:
        return self.fov == 0.0

    @property
    def pixel_scale(self) -> float:
        """Pixels per unit of ``x_cam`` (orthographic) or of ``x_cam / depth`` (perspective)."""
        side = max(self.width, self.height)
        return side / self.ortho_scale if self.orthographic else 0.5 * side / math.tan(0.5 * self.fov)

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """Mesh-frame points [N, 3] -> camera-frame points [N, 3]."""
        return np.asarray(points, np.float64) @ self.rotation.T + self.translation

    def project(self, points: np.ndarray) -> np.ndarray:
        """Mesh-frame points [N, 3] -> pixel coordinates [N, 2] (u right, v down from the top-left)."""
        cam = self.to_camera(points)
        w = np.ones(len(cam)) if self.orthographic else np.maximum(-cam[:, 2], 1e-12)
        s = self.pixel_scale
        return np.stack([0.5 * self.width + s * cam[:, 0] / w, 0.5 * self.height - s * cam[:, 1] / w], 1)

    def matrix_world(self) -> np.ndarray:
        """The camera object's matrix (camera -> mesh frame) [4, 4]."""
        m = np.eye(4)
        m[:3, :3] = self.rotation.T
        m[:3, 3] = -self.rotation.T @ self.translation
        return m

    def lens(self) -> float:
        """Blender's focal length in mm for ``SENSOR_WIDTH_MM`` (perspective only)."""
        return 0.5 * SENSOR_WIDTH_MM / math.tan(0.5 * self.fov)


def parse_camera(data: Any) -> ViewCamera:
    """``Camera.to_dict`` as received (untrusted): every field checked, else ``BadCamera``."""
    if not isinstance(data, dict):
        raise BadCamera("the camera is not an object")
    rotation = _array(data, "rotation", (3, 3))
    if abs(np.linalg.det(rotation) - 1.0) > 1e-3 or np.abs(rotation @ rotation.T - np.eye(3)).max() > 1e-3:
        raise BadCamera("the camera rotation is not a rotation")
    u, _, vt = np.linalg.svd(rotation)
    translation = _array(data, "translation", (3,))
    width, height = (_int(data, key) for key in ("width", "height"))
    fov = _number(data, "fov", 0.0, math.pi - 1e-3)
    scale = _number(data, "ortho_scale", 1e-6, 1e6)
    near = _number(data, "clip_start", 1e-6, 1e6)
    far = _number(data, "clip_end", near, 1e9)
    return ViewCamera(u @ vt, translation, width, height, fov, scale, near, far)


@dataclass(frozen=True)
class PictureFrame:
    """How a reference-image empty shows its picture: its world matrix and the picture's local extent."""

    matrix: tuple[tuple[float, ...], ...]  # [4][4] the empty's matrix_world
    size: float  # empty_display_size: the larger side's local length
    offset: tuple[float, float]  # empty_image_offset
    aspect: tuple[float, float]  # the picture's displayed width and height relative to the larger (<= 1)

    @classmethod
    def of(cls, matrix: Any, size: float, offset: Any, pixels: tuple[int, int],
           pixel_aspect: tuple[float, float] = (1.0, 1.0)) -> PictureFrame:
        """From an empty's values: ``pixels`` is the image's (width, height), ``pixel_aspect`` Blender's
        ``display_aspect`` (as the viewport draws it)."""
        w = max(int(pixels[0]), 1) * float(pixel_aspect[0])
        h = max(int(pixels[1]), 1) * float(pixel_aspect[1])
        rows = tuple(tuple(float(matrix[i][j]) for j in range(4)) for i in range(4))
        return cls(rows, float(size), (float(offset[0]), float(offset[1])), (w / max(w, h), h / max(w, h)))

    def extent(self) -> tuple[float, float, float, float]:
        """(x0, y0, width, height) of the picture in the empty's local frame."""
        w, h = self.size * self.aspect[0], self.size * self.aspect[1]
        return self.offset[0] * w, self.offset[1] * h, w, h

    def to_picture(self, points: np.ndarray, camera: ViewCamera) -> np.ndarray:
        """World points [N, 3] -> pixels [N, 2] of ``camera``'s image as the empty shows it, seen from its
        viewpoint (``viewpoint``): the inverse of the placement, for checks."""
        local = (np.asarray(points, np.float64) - self.world()[:3, 3]) @ np.linalg.inv(self.world()[:3, :3]).T
        x0, y0, w, h = self.extent()
        eye = self.viewpoint(camera)
        if eye is not None:  # perspective: along the ray from the eye to the picture plane (z = 0)
            t = eye[2] / np.maximum(eye[2] - local[:, 2], 1e-12)
            local = eye + (local - eye) * t[:, None]
        return np.stack([(local[:, 0] - x0) / w * camera.width, (y0 + h - local[:, 1]) / h * camera.height], 1)

    def world(self) -> np.ndarray:
        return np.array(self.matrix, np.float64)

    def pixel_size(self, camera: ViewCamera) -> float:
        """Local length of one of the camera's pixels on the picture (the mean where aspects differ)."""
        _, _, w, h = self.extent()
        return math.sqrt(w / camera.width * h / camera.height)

    def viewpoint(self, camera: ViewCamera) -> np.ndarray | None:
        """The perspective eye in the empty's local frame (None when orthographic)."""
        if camera.orthographic:
            return None
        x0, y0, w, h = self.extent()
        return np.array([x0 + 0.5 * w, y0 + 0.5 * h, self.pixel_size(camera) * camera.pixel_scale])


def overlay_matrix(camera: ViewCamera, frame: PictureFrame, vertices: np.ndarray) -> np.ndarray:
    """The object matrix [4, 4] (mesh frame -> world) under which ``vertices`` [N, 3], seen from the empty's
    viewpoint, cover the picture exactly where ``camera`` sees them in its image.

    The mesh's camera frame is mapped onto the empty's frame by a rotation and a uniform scale: screen right
    and up become the picture's, the viewing direction the empty's -Z. The object's farthest point from the
    viewer lies on the picture plane, so the whole object is in front of the picture.
    """
    x0, y0, w, h = frame.extent()
    centre = np.array([x0 + 0.5 * w, y0 + 0.5 * h, 0.0])
    depth = -camera.to_camera(vertices)[:, 2] if len(vertices) else np.ones(1)
    eye = frame.viewpoint(camera)
    if eye is None:
        scale = frame.pixel_size(camera) * camera.pixel_scale  # local units per camera-frame unit
        origin = centre + np.array([0.0, 0.0, scale * float(depth.max())])  # the camera frame's origin
    else:
        scale = float(eye[2]) / max(float(depth.max()), 1e-9)  # the farthest point lands on the plane
        origin = eye
    local = np.eye(4)
    local[:3, :3] = scale * camera.rotation
    local[:3, 3] = scale * camera.translation + origin
    return frame.world() @ local


def _array(data: dict[str, Any], key: str, shape: tuple[int, ...]) -> np.ndarray:
    try:
        a = np.asarray(data[key], np.float64)
    except (KeyError, TypeError, ValueError):
        raise BadCamera(f"camera field '{key}' is missing or not numbers") from None
    if a.shape != shape or not np.isfinite(a).all():
        raise BadCamera(f"camera field '{key}' must be {'x'.join(map(str, shape))} finite numbers")
    return a


def _number(data: dict[str, Any], key: str, low: float, high: float) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadCamera(f"camera field '{key}' must be a finite number")
    if not low <= value <= high:
        raise BadCamera(f"camera field '{key}'={value} is out of range [{low}, {high}]")
    return float(value)


def _int(data: dict[str, Any], key: str) -> int:
    value = _number(data, key, 1, MAX_SIDE)
    if not value.is_integer():
        raise BadCamera(f"camera field '{key}' must be a whole number")
    return int(value)
