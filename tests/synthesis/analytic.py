"""Ray-traced truth for the view tests: each pixel centre's ray against an analytic sphere or box, and masks."""

from __future__ import annotations

import numpy as np

from backend.camera import Camera


def sphere_truth(camera: Camera, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ray-traced (hit [H, W], camera-space normals [H, W, 3], depth [H, W]) of a sphere at the origin."""
    o, d = camera.center, camera.ray_directions()  # [3], [H, W, 3]
    b = d @ o
    disc = b * b - (o @ o - radius * radius)
    hit = disc > 0
    t = -b - np.sqrt(np.maximum(disc, 0.0))
    p = o + t[..., None] * d  # [H, W, 3]
    return hit, (p / radius) @ camera.rotation.T, -camera.to_camera(p.reshape(-1, 3))[:, 2].reshape(t.shape)


def box_truth(camera: Camera, half: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ray-traced (hit [H, W], camera-space normals [H, W, 3], face id [H, W]) of a box at the origin."""
    o, d = camera.center, camera.ray_directions()
    with np.errstate(divide="ignore"):
        inv = 1.0 / d
    t1, t2 = (-half - o) * inv, (half - o) * inv
    near, far = np.minimum(t1, t2), np.maximum(t1, t2)  # [H, W, 3]
    t_in, t_out = near.max(-1), far.min(-1)
    hit = (t_in < t_out) & (t_in > 0)
    axis = near.argmax(-1)  # the slab entered last is the face hit
    sign = -np.sign(np.take_along_axis(d, axis[..., None], -1)[..., 0])
    world = np.eye(3)[axis] * sign[..., None]
    return hit, world @ camera.rotation.T, axis * 2 + (sign > 0)


def interior(label: np.ndarray, band: int) -> np.ndarray:
    """Pixels whose whole (2 band + 1)^2 window holds one label value (label [H, W] int, -1 = background)."""
    pad = np.pad(label, band, constant_values=-1)
    h, w = label.shape
    same = label >= 0
    for dy in range(2 * band + 1):
        for dx in range(2 * band + 1):
            same &= pad[dy:dy + h, dx:dx + w] == label
    return same


def mean_error_deg(a: np.ndarray, b: np.ndarray) -> float:
    cos = np.clip((a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1), -1.0, 1.0)
    return float(np.degrees(np.arccos(cos)).mean())


def only_on_the_outline(mask: np.ndarray, truth: np.ndarray) -> bool:
    """Every pixel where the masks differ lies on the truth's one-pixel outline."""
    inside = interior(np.where(truth, 0, -1), 1)
    outside = interior(np.where(~truth, 0, -1), 1)
    return not ((mask != truth) & (inside | outside)).any()
