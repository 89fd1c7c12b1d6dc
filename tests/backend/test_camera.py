"""The one camera convention: projection, its inverse, look-at, JSON, Blender and glTF forms (pure numpy)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from backend.camera import Camera, euler_xyz, look_at, make_camera, matrix_world, rotation_angle, to_gltf
from backend.errors import BadInput


def _cameras() -> list[Camera]:
    r, t = look_at([1.0, -2.5, 1.2], [0.1, 0.0, 0.05])
    return [make_camera(r, t, 160, 120, fov=math.radians(40)), make_camera(r, t, 90, 130, ortho_scale=1.3)]


@pytest.mark.parametrize("camera", _cameras(), ids=["perspective", "orthographic"])
def test_project_unproject_round_trip(camera: Camera):
    points = np.random.default_rng(0).uniform(-0.5, 0.5, (50, 3))
    uvd = camera.project(points)
    np.testing.assert_allclose(camera.unproject(uvd[:, :2], uvd[:, 2]), points, atol=1e-9)


def test_look_at_centres_the_target_at_its_distance():
    eye, target = np.array([0.3, -3.0, 0.4]), np.array([0.0, 0.1, 0.0])
    cam = make_camera(*look_at(eye, target), 100, 80, fov=math.radians(50))
    u, v, depth = cam.project(target[None])[0]
    assert (u, v) == pytest.approx((50.0, 40.0)) and depth == pytest.approx(np.linalg.norm(eye - target))
    np.testing.assert_allclose(cam.center, eye, atol=1e-12)
    up = cam.project(target[None] + [[0.0, 0.0, 0.1]])[0]
    right = cam.project(target[None] + [[0.1, 0.0, 0.0]])[0]
    assert up[1] < 40.0 and right[0] > 50.0, "world +Z is image-up and world +X image-right seen from -Y"


def test_fov_spans_the_larger_side():
    cam = make_camera(np.eye(3), [0.0, 0.0, -2.0], 200, 100, fov=math.radians(90))
    edge = cam.project(np.array([[2.0, 0.0, 0.0]]))[0]  # 45 degrees to the right at depth 2
    assert edge[0] == pytest.approx(200.0)
    ortho = make_camera(np.eye(3), [0.0, 0.0, -2.0], 100, 200, ortho_scale=4.0)
    assert ortho.project(np.array([[0.0, 2.0, 0.0]]))[0][1] == pytest.approx(0.0)


def test_ray_directions_match_projection():
    cam = _cameras()[0]
    rays = cam.ray_directions()  # [H, W, 3]
    point = cam.center + 2.0 * rays[37, 101]
    assert cam.project(point[None])[0][:2] == pytest.approx((101.5, 37.5))


def test_json_round_trip():
    for cam in _cameras():
        data = json.loads(json.dumps(cam.to_dict()))
        back = Camera.from_dict(data)
        np.testing.assert_allclose(back.rotation, cam.rotation, atol=1e-12)
        np.testing.assert_allclose(back.translation, cam.translation)
        assert (back.width, back.height, back.fov, back.ortho_scale) == (cam.width, cam.height, cam.fov,
                                                                          cam.ortho_scale)


@pytest.mark.parametrize("change", [
    {"rotation": [[1, 0, 0], [0, 1, 0], [0, 0, -1]]},  # a reflection
    {"rotation": [[1, 0], [0, 1]]},
    {"translation": [0, float("nan"), 0]},
    {"width": True}, {"width": 0}, {"height": 2.5}, {"height": 10**9},
    {"fov": "wide"}, {"fov": 4.0}, {"ortho_scale": -1.0},
])
def test_bad_camera_json_is_refused(change):
    data = {**_cameras()[0].to_dict(), **change}
    with pytest.raises(BadInput):
        Camera.from_dict(data)
    with pytest.raises(BadInput):
        Camera.from_dict([1, 2, 3])


def test_blender_euler_reproduces_the_matrix():
    for cam in _cameras():
        x, y, z = euler_xyz(matrix_world(cam)[:3, :3])
        rx = np.array([[1, 0, 0], [0, math.cos(x), -math.sin(x)], [0, math.sin(x), math.cos(x)]])
        ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
        rz = np.array([[math.cos(z), -math.sin(z), 0], [math.sin(z), math.cos(z), 0], [0, 0, 1]])
        assert rotation_angle(rz @ ry @ rx, cam.rotation.T) < 1e-6


def test_gltf_camera_looks_the_same_way():
    cam = _cameras()[0]
    g = to_gltf(cam)
    node = np.array(g["node_matrix"]).reshape(4, 4).T  # column-major
    forward_gltf = node[:3, :3] @ [0.0, 0.0, -1.0]
    forward_blender = cam.rotation.T @ [0.0, 0.0, -1.0]
    x, y, z = forward_blender
    np.testing.assert_allclose(forward_gltf, [x, z, -y], atol=1e-12)
    persp = g["camera"]["perspective"]
    assert math.tan(persp["yfov"] / 2) == pytest.approx(math.tan(cam.fov / 2) * 120 / 160)
    assert persp["aspectRatio"] == pytest.approx(160 / 120)
    ortho = to_gltf(_cameras()[1])["camera"]["orthographic"]
    assert (ortho["xmag"], ortho["ymag"]) == pytest.approx((1.3 / 2 * 90 / 130, 1.3 / 2))
