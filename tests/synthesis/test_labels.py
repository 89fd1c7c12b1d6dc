"""Labels against analytic truth: volumes of a sphere and a cube, samples on the surface with true normals."""

from __future__ import annotations

import numpy as np

from synthesis.labels import make_labels, sample_surface, solid_occupancy, surface_occupancy, voxel_centres

from .conftest import box, icosphere

R = 64


def _centres() -> np.ndarray:
    c = voxel_centres(R)
    return np.stack(np.meshgrid(c, c, c, indexing="ij"), -1)  # [R, R, R, 3]


def test_sphere_occupancy_matches_the_analytic_volume_and_the_voxel_centres():
    radius = 0.37
    occ = solid_occupancy(icosphere(radius, 5), R)
    volume = occ.sum() / R**3
    assert abs(volume - 4 / 3 * np.pi * radius**3) / (4 / 3 * np.pi * radius**3) < 0.01
    analytic = np.linalg.norm(_centres(), axis=-1) < radius
    assert (occ != analytic).sum() <= 0.01 * analytic.sum()  # only voxels between facet and sphere differ


def test_cube_occupancy_is_exact_and_indexed_x_y_z():
    occ = solid_occupancy(box((0.5, 0.25, 0.125), centre=(0.1, 0.0, -0.1)), R)
    assert occ.sum() == 32 * 16 * 8  # no face passes through a voxel centre, so the count is exact
    ix, iy, iz = np.nonzero(occ)
    assert (ix.min(), ix.max()) == (22, 53)  # x in [-0.15, 0.35]: centres -0.5 + (i + 0.5)/64
    assert (iy.min(), iy.max()) == (24, 39)
    assert (iz.min(), iz.max()) == (22, 29)  # z in [-0.1625, -0.0375]


def test_occupancy_of_a_mesh_outside_the_grid_is_empty_and_of_two_shapes_adds_up():
    assert not solid_occupancy(box((0.2, 0.2, 0.2), centre=(2.0, 0, 0)), R).any()
    a, b = box((0.25, 0.25, 0.25), (-0.25, 0, 0)), box((0.25, 0.25, 0.25), (0.25, 0, 0))
    from synthesis.mesh import Mesh

    both = Mesh(np.vstack([a.vertices, b.vertices]), np.vstack([a.faces, b.faces + len(a.vertices)]))
    assert solid_occupancy(both, R).sum() == 2 * 16**3


def test_sphere_surface_samples_lie_on_the_sphere_with_outward_normals():
    radius = 0.4
    points, normals = sample_surface(icosphere(radius, 5), 5000, np.random.default_rng(0))
    assert points.shape == normals.shape == (5000, 3) and points.dtype == np.float32
    r = np.linalg.norm(points, axis=1)
    assert np.abs(r - radius).max() < 2e-3 * radius  # facets sit within the sagitta of the sphere
    assert np.allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)
    assert (np.einsum("ij,ij->i", normals, points / r[:, None]) > 0.995).all()


def test_cube_surface_samples_lie_on_the_faces_with_axis_normals():
    points, normals = sample_surface(box((0.6, 0.6, 0.6)), 3000, np.random.default_rng(1))
    on_face = np.isclose(np.abs(points).max(axis=1), 0.3, atol=1e-6)
    assert on_face.all()
    axis = np.abs(points).argmax(axis=1)
    expected = np.zeros_like(normals)
    expected[np.arange(len(points)), axis] = np.sign(points[np.arange(len(points)), axis])
    assert np.allclose(normals, expected, atol=1e-6)
    share = np.bincount(axis, minlength=3) / len(points)
    assert np.allclose(share, 1 / 3, atol=0.05)  # uniform by area


def test_surface_voxels_form_the_shell_of_the_sphere():
    radius = 0.37
    shell = surface_occupancy(icosphere(radius, 5), R, np.random.default_rng(0))
    distance = np.abs(np.linalg.norm(_centres(), axis=-1) - radius)[shell]
    assert distance.max() <= np.sqrt(3) / 2 / R + 1e-6  # every marked voxel touches the sphere
    expected = 4 * np.pi * radius**2 * R**2 * 1.5  # about 1.5 voxels per voxel-face of area
    assert 0.8 * expected < shell.sum() < 1.3 * expected


def test_make_labels_is_reproducible():
    a = make_labels(icosphere(), 32, 100, np.random.default_rng(3))
    b = make_labels(icosphere(), 32, 100, np.random.default_rng(3))
    assert np.array_equal(a.points, b.points) and np.array_equal(a.surface, b.surface)
    assert a.solid.shape == a.surface.shape == (32, 32, 32)
