"""The rasterizer against analytic answers: coverage, depth, face ids, barycentrics and normals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from backend.camera import look_at, make_camera
from backend.render.raster import camera_tensors, rasterize, rasterize_cameras, to_camera, to_screen
from backend.render.shade import encode_normals, normal_image, render_normal_map, surface_points
from tests.backend.shapes import chair

TRIANGLE = np.array([[-0.5, -0.5, 0.0], [0.6, -0.4, 0.0], [0.0, 0.7, 0.0]], np.float32)
TOP = make_camera(np.eye(3), [0.0, 0.0, -2.0], 32, 32, ortho_scale=2.0)  # looks down -Z at z = 0 from z = 2


def _barycentric(points: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Barycentrics [N, 3] of 2D points [N, 2] in a 2D triangle [3, 2]."""
    m = np.stack([tri[0] - tri[2], tri[1] - tri[2]], 1)
    ab = np.linalg.solve(m, (points - tri[2]).T).T
    return np.concatenate([ab, 1 - ab.sum(1, keepdims=True)], 1)


def _pixel_world(camera, depth: float) -> np.ndarray:
    cols, rows = np.meshgrid(np.arange(camera.width) + 0.5, np.arange(camera.height) + 0.5)
    uv = np.stack([cols.ravel(), rows.ravel()], 1)
    return camera.unproject(uv, np.full(len(uv), depth))


def test_triangle_coverage_depth_and_barycentrics():
    v, f = torch.tensor(TRIANGLE), torch.tensor([[0, 1, 2]])
    ras = rasterize_cameras(v, f, [TOP])
    world = _pixel_world(TOP, 2.0)  # pixel centres on the plane z = 0
    bary = _barycentric(world[:, :2], TRIANGLE[:, :2].astype(np.float64))
    clear = np.abs(bary).min(1) > 1e-4  # not on an edge
    expected = (bary >= 0).all(1)
    got = ras.mask[0].numpy().ravel()
    assert expected.sum() > 100 and (got[clear] == expected[clear]).all()
    assert (ras.face_id[0].numpy().ravel()[got] == 0).all()
    np.testing.assert_allclose(ras.depth[0].numpy().ravel()[got], 2.0, atol=1e-5)
    assert np.isinf(ras.depth[0].numpy().ravel()[~got]).all()
    np.testing.assert_allclose(ras.bary[0].numpy().reshape(-1, 3)[got], bary[got], atol=1e-4)


def test_cube_front_view_is_a_square_facing_the_camera():
    from tests.backend.shapes import _boxes

    v, f = _boxes([((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))])
    cam = make_camera(*look_at([0.0, -3.0, 0.0], [0.0, 0.0, 0.0]), 32, 32, ortho_scale=2.0)
    vt, ft = torch.tensor(v), torch.tensor(f)
    ras = rasterize_cameras(vt, ft, [cam])
    square = np.zeros((32, 32), bool)
    square[8:24, 8:24] = True
    np.testing.assert_array_equal(ras.mask[0].numpy(), square)
    np.testing.assert_allclose(ras.depth[0].numpy()[square], 2.5, atol=1e-5)
    front = {i for i, tri in enumerate(v[f]) if np.allclose(tri[:, 1], -0.5)}
    assert set(np.unique(ras.face_id[0].numpy()[square]).tolist()) == front
    rot, trans, _ = camera_tensors([cam])
    one_sided = normal_image(ras, to_camera(vt, rot, trans), ft, two_sided=False)[0].numpy()
    np.testing.assert_allclose(one_sided[square], np.tile([0.0, 0.0, 1.0], (256, 1)), atol=1e-6)
    colors = encode_normals(torch.tensor(one_sided), ras.mask[0]).numpy()
    np.testing.assert_allclose(colors[square], 0.5 + 0.5 * np.array([[0.0, 0.0, 1.0]]).repeat(256, 0))


def test_perspective_depth_and_barycentrics_are_perspective_correct():
    quad = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], np.float64)
    quad[:, 2] = 0.3 * quad[:, 0] + 0.2 * quad[:, 1]  # a tilted plane
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    cam = make_camera(np.eye(3), [0.0, 0.0, -3.0], 48, 40, fov=math.radians(50))
    v, f = torch.tensor(quad, dtype=torch.float32), torch.tensor(faces)
    ras = rasterize_cameras(v, f, [cam])
    hit = ras.mask[0].numpy()
    rows, cols = np.nonzero(hit)
    world = cam.unproject(np.stack([cols + 0.5, rows + 0.5], 1), ras.depth[0].numpy()[hit])
    assert len(world) > 800
    np.testing.assert_allclose(world[:, 2], 0.3 * world[:, 0] + 0.2 * world[:, 1], atol=1e-4)
    rot, trans, _ = camera_tensors([cam])
    points = surface_points(ras, to_camera(v, rot, trans), f)[0].numpy()[hit]  # interpolated with the barycentrics
    np.testing.assert_allclose(points, cam.to_camera(world), atol=1e-4)
    normals = render_normal_map(quad, faces, cam)[1][hit]
    expected = cam.rotation @ np.array([-0.3, -0.2, 1.0]) / np.linalg.norm([-0.3, -0.2, 1.0])
    np.testing.assert_allclose(normals, np.tile(expected, (len(normals), 1)), atol=1e-5)


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_the_nearer_triangle_wins_whatever_the_order(order):
    near, far = TRIANGLE + [0.0, 0.0, 0.5], TRIANGLE[::-1] + [0.1, 0.0, -0.5]
    pieces = [near, far]
    v = torch.tensor(np.concatenate([pieces[order[0]], pieces[order[1]]]))
    f = torch.tensor([[0, 1, 2], [3, 4, 5]])
    ras = rasterize_cameras(v, f, [TOP])
    both = _barycentric(_pixel_world(TOP, 2.0)[:, :2], near[:, :2].astype(np.float64)).min(1) > 1e-3
    nearest = order.index(0)
    assert (ras.face_id[0].numpy().ravel()[both] == nearest).all()
    np.testing.assert_allclose(ras.depth[0].numpy().ravel()[both], 1.5, atol=1e-5)


def test_batches_and_chunks_change_nothing():
    v, f = chair()
    cams = [make_camera(*look_at(d, [0, 0, 0]), 40, 36, fov=math.radians(45)) for d in
            ([2.0, -2.0, 1.0], [-1.0, -2.5, 0.5], [0.5, 2.0, 2.0])]
    vt, ft = torch.tensor(v), torch.tensor(f)
    together = rasterize_cameras(vt, ft, cams)
    rot, trans, scale = camera_tensors(cams)
    screen = to_screen(to_camera(vt, rot, trans), scale, 36, 40, perspective=True)
    chunked = rasterize(screen, ft, 36, 40, perspective=True, max_pairs=7)
    for i, cam in enumerate(cams):
        alone = rasterize_cameras(vt, ft, [cam])
        assert torch.equal(alone.face_id[0], together.face_id[i])
        assert torch.equal(chunked.face_id[i], together.face_id[i])
        torch.testing.assert_close(alone.depth[0], together.depth[i])
    assert together.mask.sum() > 200


def test_triangles_behind_the_camera_or_off_screen_are_skipped():
    behind = torch.tensor(TRIANGLE + [0.0, 0.0, 3.0])  # z = 3: behind a camera at z = 2
    f = torch.tensor([[0, 1, 2]])
    persp = make_camera(np.eye(3), [0.0, 0.0, -2.0], 16, 16, fov=math.radians(60))
    assert not rasterize_cameras(behind, f, [persp]).mask.any()
    aside = torch.tensor(TRIANGLE + [5.0, 0.0, 0.0])
    assert not rasterize_cameras(aside, f, [TOP]).mask.any()
    degenerate = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.1, 0.0], [0.2, 0.2, 0.0]])
    assert not rasterize_cameras(degenerate, f, [TOP]).mask.any()
