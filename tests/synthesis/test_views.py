"""Label truth: the views' normal maps, masks and depth of a sphere and a cube against ray-traced analytic values.

The views go through the project's one camera (backend/camera.py) and rasterizer (backend/render); the truth
here is computed independently, by intersecting each pixel centre's ray with the analytic shape.
"""

from __future__ import annotations

import numpy as np
import pytest

from backend.camera import Camera, look_at, make_camera
from synthesis import sdf
from synthesis.mesh import Mesh
from synthesis.views import encode_normals, orbit_cameras, render_views

from .analytic import box_truth, interior, mean_error_deg, only_on_the_outline, sphere_truth
from .conftest import box, icosphere

SIZE = 128
BAND = 2
"Pixels within this many pixels of a silhouette (or a cube edge) are left out of the angular error."


def _front_camera(distance: float = 2.0) -> Camera:
    rotation, translation = look_at((0.0, -distance, 0.0), (0.0, 0.0, 0.0))
    return make_camera(rotation, translation, SIZE, SIZE, np.radians(40.0))


def test_sphere_normals_point_right_up_and_towards_the_viewer():
    views = render_views(icosphere(0.4, 5), [_front_camera()])
    mask, normals = views.mask[0], views.normals[0]
    c = SIZE // 2
    assert np.allclose(normals[c, c], [0, 0, 1], atol=0.03)  # facing the camera: +Z
    right, top = np.nonzero(mask[c])[0].max(), np.nonzero(mask[:, c])[0].min()
    assert normals[c, right, 0] > 0.85 and normals[top, c, 1] > 0.85  # +X right, +Y up
    assert np.allclose(np.linalg.norm(normals[mask], axis=1), 1, atol=1e-4)
    rgb = encode_normals(normals, mask)
    assert np.abs(rgb[c, c].astype(int) - [128, 128, 255]).max() <= 2  # stored as (n + 1) / 2
    assert not rgb[~mask].any() and not views.depth[0][~mask].any()


@pytest.mark.parametrize("mode", ["smooth", "flat"])
def test_sphere_normal_map_mask_and_depth_match_the_analytic_sphere(mode):
    cameras = orbit_cameras(np.random.default_rng(3), 2, SIZE)
    views = render_views(icosphere(0.4, 5), cameras, mode)
    for k, camera in enumerate(cameras):
        hit, normals, depth = sphere_truth(camera, 0.4)
        assert only_on_the_outline(views.mask[k], hit)  # the mask is the sphere's projection
        inner = interior(np.where(hit, 0, -1), BAND) & views.mask[k]
        assert inner.sum() > 0.8 * hit.sum()
        assert mean_error_deg(views.normals[k][inner], normals[inner]) < (0.2 if mode == "smooth" else 1.0)
        assert np.abs(views.depth[k][inner] - depth[inner]).max() < 2e-3  # facets lie within 1e-3 of the sphere


def test_cube_flat_normals_and_mask_match_the_analytic_cube():
    half = np.array([0.4, 0.35, 0.3])
    cameras = orbit_cameras(np.random.default_rng(5), 3, SIZE)
    views = render_views(box(tuple(2 * half)), cameras, "flat")
    for k, camera in enumerate(cameras):
        hit, normals, face = box_truth(camera, half)
        assert only_on_the_outline(views.mask[k], hit)
        inner = interior(np.where(hit, face, -1), BAND) & views.mask[k]
        assert inner.sum() > 0.6 * hit.sum()
        assert mean_error_deg(views.normals[k][inner], normals[inner]) < 0.01  # exact up to float32


def test_a_meshed_cube_with_smooth_normals_matches_the_analytic_cube_away_from_its_edges():
    """The pipeline's default: a marching-cubes mesh with interpolated vertex normals (edges get rounded)."""
    half = np.array([0.4, 0.35, 0.3])
    mesh = Mesh(*sdf.mesh_field(sdf.box((0, 0, 0), tuple(half)), 64))  # type: ignore[arg-type]
    cameras = orbit_cameras(np.random.default_rng(5), 3, SIZE)
    views = render_views(mesh, cameras, "smooth")
    for k, camera in enumerate(cameras):
        hit, normals, face = box_truth(camera, half)
        assert only_on_the_outline(views.mask[k], hit)  # marching cubes keeps the box's outline to a pixel
        inner = interior(np.where(hit, face, -1), 2 * BAND) & views.mask[k]  # one grid cell is ~2 pixels
        assert inner.sum() > 0.4 * hit.sum()
        assert mean_error_deg(views.normals[k][inner], normals[inner]) < 1.0


def test_orbit_cameras_are_the_one_camera_and_survive_json():
    cameras = orbit_cameras(np.random.default_rng(0), 3, 64)
    for camera in cameras:
        again = Camera.from_dict(camera.to_dict())
        assert np.allclose(again.rotation, camera.rotation) and np.allclose(again.translation, camera.translation)
        assert (again.width, again.height, again.fov) == (64, 64, camera.fov)
        assert np.allclose(camera.project(np.zeros((1, 3)))[0, :2], [32, 32])  # they look at the origin
        blender = camera.to_dict()["blender"]
        assert np.allclose(np.array(blender["matrix_world"])[:3, 3], camera.center)
        assert blender["type"] == "PERSP"
    azimuths = sorted(np.degrees(np.arctan2(c.center[1], c.center[0])) % 360 for c in cameras)
    assert np.allclose(np.diff(azimuths), 120.0)  # evenly spread around the asset
