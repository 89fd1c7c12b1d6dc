"""Views: the rasterised normal map, mask and depth of a sphere against analytic truth, in the one convention."""

from __future__ import annotations

import numpy as np

from synthesis.camera import Camera, look_at, orbit_cameras
from synthesis.raster import encode_normals, rasterize

from .conftest import icosphere

SIZE = 128


def _front_camera(distance: float = 2.0) -> Camera:
    return Camera(SIZE, SIZE, look_at(np.array([0.0, -distance, 0.0]), np.zeros(3)), fov_y_deg=40.0)


def test_sphere_normals_point_right_up_and_towards_the_viewer():
    frame = rasterize(icosphere(0.4, 5), _front_camera())
    c = SIZE // 2
    assert np.allclose(frame.normals[c, c], [0, 0, 1], atol=0.03)  # facing the camera: +Z
    right = np.nonzero(frame.mask[c])[0].max()
    top = np.nonzero(frame.mask[:, c])[0].min()
    assert frame.normals[c, right, 0] > 0.85 and frame.normals[top, c, 1] > 0.85  # +X right, +Y up
    inside = frame.normals[frame.mask]
    assert np.allclose(np.linalg.norm(inside, axis=1), 1, atol=1e-4) and (inside[:, 2] > -0.05).all()
    rgb = encode_normals(frame)
    assert np.abs(rgb[c, c].astype(int) - [128, 128, 255]).max() <= 2  # stored as (n + 1) / 2
    assert not rgb[~frame.mask].any()


def test_sphere_silhouette_and_depth_match_the_analytic_values():
    camera = _front_camera()
    frame = rasterize(icosphere(0.4, 5), camera)
    radius_px = np.tan(np.arcsin(0.4 / 2.0)) * camera.focal  # the tangent cone seen from distance 2
    assert abs(np.sqrt(frame.mask.sum() / np.pi) - radius_px) < 0.01 * radius_px
    assert abs(frame.depth[SIZE // 2, SIZE // 2] - 1.6) < 2e-3
    assert (frame.depth[~frame.mask] == 0).all()


def test_camera_json_is_consistent():
    cam = orbit_cameras(np.random.default_rng(0), 3, 64)[1]
    data = cam.to_json()
    w2c, c2w = np.array(data["world_to_camera"]), np.array(data["camera_to_world"])
    assert np.allclose(w2c @ c2w, np.eye(4))
    assert np.allclose(np.linalg.det(w2c[:3, :3]), 1.0)  # a rotation, right-handed
    origin = cam.project(cam.to_camera(np.zeros((1, 3))))[0]
    assert np.allclose(origin, [32, 32])  # orbit cameras look at the origin
    eye = c2w[:3, 3]
    assert np.allclose(c2w[:3, 2], eye / np.linalg.norm(eye))  # +Z points from the asset to the camera
    assert data["fx"] == data["fy"] and data["model"] == "perspective"
