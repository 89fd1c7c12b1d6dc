"""The one camera convention: alignment, baking, synthesis renders, training labels and the Blender camera.

Frames
- World: the backend's native frame, Blender's (+Z up, the object facing -Y, mesh in [-0.5, 0.5]^3).
- Camera: Blender's (and glTF's, and OpenGL's) camera frame: +X right, +Y up, +Z towards the viewer, so the
  camera looks down -Z. The normal-map convention uses the same axes (stored as (n + 1) / 2).
- Extrinsics: ``x_cam = rotation @ x_world + translation`` (world -> camera). The camera sits at
  ``-rotation.T @ translation``; Blender's ``matrix_world`` is the inverse, camera -> world.
- Image: ``width`` x ``height`` pixels; pixel coordinates (u, v) run from the top-left corner, u right and
  v down (row order), pixel (row r, column c) has its centre at (c + 0.5, r + 0.5). The principal point is
  the image centre (no lens shift).
- Intrinsics (as Blender with ``sensor_fit='AUTO'``): perspective ``fov`` is the full angle, in radians,
  across the larger image side; orthographic ``ortho_scale`` is the world width seen across the larger side.
  ``fov == 0`` means orthographic.
- Depth is the distance along the viewing axis, ``-z_cam`` (positive in front of the camera).

Pure numpy and the standard library: the Blender-side tests import it in Blender's own Python.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import BadInput

MAX_IMAGE_SIDE = 16384
SENSOR_WIDTH_MM = 36.0
"Blender's default sensor width; with ``sensor_fit='AUTO'`` it spans the larger image side."
Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
"Blender world -> glTF world as a matrix on column vectors: (x, y, z) -> (x, z, -y) (see mesh/export.py)."


@dataclass(frozen=True)
class Camera:
    """A pinhole (``fov > 0``) or orthographic (``fov == 0``) camera in the project's one convention."""

    rotation: np.ndarray  # [3, 3] world -> camera, orthonormal, det +1
    translation: np.ndarray  # [3] world -> camera
    width: int
    height: int
    fov: float = 0.0  # radians across the larger side; 0 = orthographic
    ortho_scale: float = 1.0  # world units across the larger side (orthographic only)
    clip_start: float = 0.01
    clip_end: float = 100.0
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def orthographic(self) -> bool:
        return self.fov == 0.0

    @property
    def pixel_scale(self) -> float:
        """Pixels per unit of ``x_cam / depth`` (perspective) or of ``x_cam`` (orthographic)."""
        side = max(self.width, self.height)
        if self.orthographic:
            return side / self.ortho_scale
        return 0.5 * side / math.tan(0.5 * self.fov)

    @property
    def center(self) -> np.ndarray:
        """The camera's position in the world [3]."""
        return -self.rotation.T @ self.translation

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """World points [N, 3] -> camera-frame points [N, 3]."""
        return np.asarray(points, np.float64) @ self.rotation.T + self.translation

    def project(self, points: np.ndarray) -> np.ndarray:
        """World points [N, 3] -> [N, 3] (u, v, depth): pixel coordinates as documented above, and depth."""
        cam = self.to_camera(points)
        depth = -cam[:, 2]
        w = np.ones_like(depth) if self.orthographic else depth
        s = self.pixel_scale
        u = 0.5 * self.width + s * cam[:, 0] / w
        v = 0.5 * self.height - s * cam[:, 1] / w
        return np.stack([u, v, depth], 1)

    def unproject(self, uv: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Pixel coordinates [N, 2] and depths [N] -> world points [N, 3] (the inverse of ``project``)."""
        uv, depth = np.asarray(uv, np.float64), np.asarray(depth, np.float64)
        w = np.ones_like(depth) if self.orthographic else depth
        s = self.pixel_scale
        x = (uv[:, 0] - 0.5 * self.width) * w / s
        y = (0.5 * self.height - uv[:, 1]) * w / s
        cam = np.stack([x, y, -depth], 1)
        return (cam - self.translation) @ self.rotation

    def ray_directions(self) -> np.ndarray:
        """World-space viewing direction of every pixel centre [H, W, 3] (unit; all equal when orthographic)."""
        cols, rows = np.meshgrid(np.arange(self.width) + 0.5, np.arange(self.height) + 0.5)
        s = self.pixel_scale
        x, y = (cols - 0.5 * self.width) / s, (0.5 * self.height - rows) / s
        if self.orthographic:
            x, y = np.zeros_like(x), np.zeros_like(y)
        d = np.stack([x, y, -np.ones_like(x)], -1) @ self.rotation  # camera -> world: R^T d
        return d / np.linalg.norm(d, axis=-1, keepdims=True)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description, with the Blender and glTF equivalents alongside."""
        return {"convention": "x_cam = R @ x_world + t; camera +X right, +Y up, looks down -Z; "
                "world = Blender (+Z up, front -Y); fov across the larger side, 0 = orthographic",
                "rotation": self.rotation.tolist(), "translation": self.translation.tolist(),
                "width": self.width, "height": self.height, "fov": self.fov, "ortho_scale": self.ortho_scale,
                "clip_start": self.clip_start, "clip_end": self.clip_end,
                "blender": to_blender(self), "gltf": to_gltf(self), **({"meta": self.meta} if self.meta else {})}

    @classmethod
    def from_dict(cls, data: Any) -> Camera:
        """Read ``to_dict``'s output (untrusted: every field is checked)."""
        if not isinstance(data, dict):
            raise BadInput("A camera must be a JSON object.", hint="Use a file written by --camera-json.")
        rotation = _array(data, "rotation", (3, 3))
        translation = _array(data, "translation", (3,))
        width, height = (_int(data, k, 1, MAX_IMAGE_SIDE) for k in ("width", "height"))
        fov = _float(data, "fov", 0.0, math.pi - 1e-3, 0.0)
        scale = _float(data, "ortho_scale", 1e-6, 1e6, 1.0)
        near = _float(data, "clip_start", 1e-6, 1e6, 0.01)
        far = _float(data, "clip_end", near, 1e9, 100.0)
        return make_camera(rotation, translation, width, height, fov, scale, near, far)


def make_camera(rotation: Any, translation: Any, width: int, height: int, fov: float = 0.0,
                ortho_scale: float = 1.0, clip_start: float = 0.01, clip_end: float = 100.0,
                meta: dict[str, Any] | None = None) -> Camera:
    """A checked ``Camera``: the rotation must be orthonormal with determinant +1 (it is re-orthonormalised)."""
    r = np.asarray(rotation, np.float64).reshape(3, 3)
    if not np.isfinite(r).all() or abs(np.linalg.det(r) - 1.0) > 1e-3 or np.abs(r @ r.T - np.eye(3)).max() > 1e-3:
        raise BadInput("The camera rotation is not a rotation matrix.",
                       hint="Give an orthonormal 3x3 world->camera matrix with determinant +1.")
    u, _, vt = np.linalg.svd(r)
    t = np.asarray(translation, np.float64).reshape(3)
    if not np.isfinite(t).all():
        raise BadInput("The camera translation must be finite.", hint="Give three finite numbers.")
    return Camera(u @ vt, t, int(width), int(height), float(fov), float(ortho_scale), float(clip_start),
                  float(clip_end), dict(meta or {}))


def look_at(eye: Any, target: Any, up: Any = (0.0, 0.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """World -> camera (rotation [3, 3], translation [3]) of a camera at ``eye`` looking at ``target``."""
    eye, target, up = (np.asarray(a, np.float64) for a in (eye, target, up))
    back = eye - target
    back /= np.linalg.norm(back)  # camera +Z points away from what it looks at
    right = np.cross(up, back)
    if np.linalg.norm(right) < 1e-9:  # looking along ``up``: any perpendicular will do
        right = np.cross(np.array([0.0, 1.0, 0.0]), back)
    right /= np.linalg.norm(right)
    r = np.stack([right, np.cross(back, right), back])  # rows: camera axes in world coordinates
    return r, -r @ eye


def rotation_angle(a: np.ndarray, b: np.ndarray) -> float:
    """Angle in degrees of the rotation taking ``a`` to ``b`` (both [3, 3])."""
    c = (np.trace(np.asarray(a).T @ np.asarray(b)) - 1.0) / 2.0
    return math.degrees(math.acos(min(1.0, max(-1.0, c))))


def matrix_world(camera: Camera) -> np.ndarray:
    """Blender's camera ``matrix_world`` (camera -> world) [4, 4]."""
    m = np.eye(4)
    m[:3, :3] = camera.rotation.T
    m[:3, 3] = camera.center
    return m


def euler_xyz(rotation: np.ndarray) -> tuple[float, float, float]:
    """Blender's ``rotation_euler`` (mode 'XYZ': R = Rz @ Ry @ Rx) of a rotation matrix [3, 3]."""
    r = np.asarray(rotation, np.float64)
    y = math.asin(max(-1.0, min(1.0, -r[2, 0])))
    if abs(r[2, 0]) < 1.0 - 1e-9:
        return math.atan2(r[2, 1], r[2, 2]), y, math.atan2(r[1, 0], r[0, 0])
    return math.atan2(-r[1, 2], r[1, 1]), y, 0.0  # gimbal lock: fold z into x


def to_blender(camera: Camera) -> dict[str, Any]:
    """The Blender camera object and data settings that reproduce ``camera`` (sensor_fit 'AUTO')."""
    m = matrix_world(camera)
    out: dict[str, Any] = {"matrix_world": m.tolist(), "location": m[:3, 3].tolist(),
                           "rotation_euler": list(euler_xyz(m[:3, :3])), "resolution_x": camera.width,
                           "resolution_y": camera.height, "sensor_fit": "AUTO", "sensor_width": SENSOR_WIDTH_MM,
                           "shift_x": 0.0, "shift_y": 0.0, "clip_start": camera.clip_start,
                           "clip_end": camera.clip_end}
    if camera.orthographic:
        out.update(type="ORTHO", ortho_scale=camera.ortho_scale)
    else:
        out.update(type="PERSP", lens=0.5 * SENSOR_WIDTH_MM / math.tan(0.5 * camera.fov))
    return out


def to_gltf(camera: Camera) -> dict[str, Any]:
    """A glTF 2.0 camera and the node matrix (column-major, glTF's +Y-up world) that places it."""
    side = max(camera.width, camera.height)
    node = np.eye(4)
    node[:3, :3] = Z_UP_TO_Y_UP @ camera.rotation.T  # glTF cameras also look down -Z with +Y up
    node[:3, 3] = Z_UP_TO_Y_UP @ camera.center
    clip = {"znear": camera.clip_start, "zfar": camera.clip_end}
    if camera.orthographic:
        half = 0.5 * camera.ortho_scale / side
        cam = {"type": "orthographic",
               "orthographic": {"xmag": half * camera.width, "ymag": half * camera.height, **clip}}
    else:
        yfov = 2.0 * math.atan(math.tan(0.5 * camera.fov) * camera.height / side)
        cam = {"type": "perspective",
               "perspective": {"yfov": yfov, "aspectRatio": camera.width / camera.height, **clip}}
    return {"camera": cam, "node_matrix": node.T.reshape(-1).tolist()}


def _array(data: dict[str, Any], key: str, shape: tuple[int, ...]) -> np.ndarray:
    try:
        a = np.asarray(data[key], np.float64)
    except (KeyError, TypeError, ValueError):
        a = None
    if a is None or a.shape != shape or not np.isfinite(a).all():
        raise BadInput(f"Camera field '{key}' must be {'x'.join(map(str, shape))} finite numbers.",
                       hint="Use a file written by --camera-json.")
    return a


def _number(data: dict[str, Any], key: str, default: float | None) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadInput(f"Camera field '{key}' must be a finite number.", hint="Use a file written by --camera-json.")
    return float(value)


def _float(data: dict[str, Any], key: str, low: float, high: float, default: float) -> float:
    value = _number(data, key, default)
    if not low <= value <= high:
        raise BadInput(f"Camera field '{key}'={value} is out of range.", hint=f"Use a value in [{low}, {high}].")
    return value


def _int(data: dict[str, Any], key: str, low: int, high: int) -> int:
    value = _number(data, key, None)
    if not value.is_integer() or not low <= value <= high:
        raise BadInput(f"Camera field '{key}' must be a whole number in [{low}, {high}].",
                       hint="Use a file written by --camera-json.")
    return int(value)
