"""Each quality filter: one asset that passes and one that fails, for the reason the filter is about."""

from __future__ import annotations

import dataclasses

import numpy as np

from synthesis.config import FilterConfig
from synthesis.filters import run_filters
from synthesis.filters.detail import detail_filter
from synthesis.filters.shape import scale_filter, thin_filter
from synthesis.filters.topology import degenerate_filter, manifold_filter, self_intersection_filter
from synthesis.generators.hard_surface import HardSurfaceGenerator
from synthesis.mesh import Mesh, normalise

from .conftest import box, icosphere, wireframe_cube

CFG = FilterConfig()


def test_manifold_passes_a_closed_sphere_and_fails_one_with_a_hole(sphere):
    assert manifold_filter(sphere, CFG).passed
    holed = Mesh(sphere.vertices, sphere.faces[1:])
    result = manifold_filter(holed, CFG)
    assert not result.passed and result.value == 3  # the removed triangle's three edges are open
    assert "open" in result.reason


def test_manifold_fails_a_flipped_face(sphere):
    faces = sphere.faces.copy()
    faces[0] = faces[0, ::-1]
    assert not manifold_filter(Mesh(sphere.vertices, faces), CFG).passed


def test_degenerate_fails_a_repeated_corner_and_a_zero_area_face(sphere):
    assert degenerate_filter(sphere, CFG).passed
    repeated = Mesh(sphere.vertices, np.vstack([sphere.faces, [[0, 0, 1]]]))
    assert degenerate_filter(repeated, CFG).value == 1
    v = np.vstack([sphere.vertices, [[0.0, 0, 0], [1e-9, 0, 0], [2e-9, 0, 0]]])
    n = len(sphere.vertices)
    collinear = Mesh(v, np.vstack([sphere.faces, [[n, n + 1, n + 2]]]))
    assert not degenerate_filter(collinear, CFG).passed


def test_self_intersection_fails_two_overlapping_spheres(sphere):
    assert self_intersection_filter(sphere, CFG).passed
    other = icosphere(0.3, 3, centre=(0.3, 0.0, 0.0))
    both = Mesh(np.vstack([sphere.vertices, other.vertices]),
                np.vstack([sphere.faces, other.faces + len(sphere.vertices)]))
    result = self_intersection_filter(both, CFG)
    assert not result.passed and result.value > 10


def test_self_intersection_passes_two_separate_spheres():
    a, b = icosphere(0.2, 3, (-0.25, 0, 0)), icosphere(0.2, 3, (0.25, 0, 0))
    both = Mesh(np.vstack([a.vertices, b.vertices]), np.vstack([a.faces, b.faces + len(a.vertices)]))
    assert self_intersection_filter(both, CFG).passed


def test_detail_rejects_a_smooth_blob_and_keeps_a_generated_hard_surface_asset(sphere):
    blob = detail_filter(sphere, CFG)
    assert not blob.passed and "detail score" in blob.reason
    asset = normalise(HardSurfaceGenerator(64).generate("hard_surface-00000", 0), 0.9)
    detailed = detail_filter(asset, CFG)
    assert detailed.passed and detailed.value > 3 * blob.value


def test_thin_rejects_a_wireframe_and_keeps_a_solid(sphere):
    assert thin_filter(sphere, CFG).passed
    result = thin_filter(wireframe_cube(), CFG)
    assert not result.passed and result.value > 0.9


def test_scale_rejects_a_flat_plate_and_keeps_a_box():
    cfg = dataclasses.replace(CFG, min_faces=0)
    assert scale_filter(box((0.8, 0.6, 0.5)), cfg).passed
    plate = scale_filter(box((0.9, 0.9, 0.02)), cfg)
    assert not plate.passed and "aspect" in plate.reason


def test_scale_rejects_too_many_parts_and_leaving_the_unit_cube():
    cfg = dataclasses.replace(CFG, min_faces=0, max_components=1)
    a, b = box((0.2, 0.2, 0.2), (-0.3, 0, 0)), box((0.2, 0.2, 0.2), (0.3, 0, 0))
    two = Mesh(np.vstack([a.vertices, b.vertices]), np.vstack([a.faces, b.faces + len(a.vertices)]))
    assert "2 parts" in scale_filter(two, cfg).reason
    assert "outside the unit cube" in scale_filter(box((1.2, 0.5, 0.5)), cfg).reason


def test_run_filters_reports_every_filter_and_fails_an_empty_mesh(sphere):
    names = [r.name for r in run_filters(sphere, CFG)]
    assert names == ["manifold", "degenerate", "self_intersection", "detail", "thin", "scale"]
    empty = run_filters(Mesh(np.zeros((0, 3)), np.zeros((0, 3))), CFG)
    assert len(empty) == 6 and not any(r.passed for r in empty)
