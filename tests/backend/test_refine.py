"""Reconstruction-level refinement on a shape with a known answer: a smoothed copy of a detailed mesh is
refined against the detailed mesh's normal map and mask from a known view. The figures over more shapes
and starts (smoothed, decimated) are bench/bench_refine.py's."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from backend.camera import look_at, make_camera
from backend.errors import BadInput, Cancelled
from backend.jobs import JobContext
from backend.refine.laplacian import connectivity, unique_edges
from backend.refine.refine import Confidence, RefineConfig, refine_mesh
from backend.render.shade import render_normal_map
from tests.backend.shapes import bumpy_sphere, chamfer, smoothed

QUICK = RefineConfig(iterations=40, size=128)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def scene():
    detailed = bumpy_sphere(3)
    start = smoothed(*detailed, iterations=10)
    camera = make_camera(*look_at([1.2, -2.4, 0.9], [0.0, 0.0, 0.0]), 120, 100, fov=math.radians(40))
    mask, normals, _ = render_normal_map(*detailed, camera)
    return detailed, start, camera, mask, normals


def test_refinement_brings_the_view_and_the_surface_closer(scene):
    (v, f), start, camera, mask, normals = scene
    result = refine_mesh(start, f, camera, mask, normals, QUICK)
    s = result.stats
    assert result.applied and s["iterations"] == QUICK.iterations
    assert s["angle_deg_after"] < 0.75 * s["angle_deg_before"], s
    assert s["iou_after"] > s["iou_before"], s
    assert chamfer((result.vertices, f), (v, f)) < 0.95 * chamfer((start, f), (v, f))
    assert result.vertices.shape == start.shape and result.vertices.dtype == np.float32


def test_a_mesh_that_already_matches_comes_back_unchanged(scene):
    (v, f), _, camera, mask, normals = scene
    result = refine_mesh(v, f, camera, mask, normals, RefineConfig(iterations=5, size=128))
    assert not result.applied and "unchanged" in result.stats["reason"]
    np.testing.assert_array_equal(result.vertices, v)


def test_cancel_is_honoured_at_the_next_step(scene):
    (_, f), start, camera, mask, normals = scene
    seen: list[int] = []
    ctx = JobContext()

    def report(stage: str, step: int, total: int, message: str) -> None:
        seen.append(step)
        if step == 10:
            ctx.cancel_event.set()

    ctx.report = report
    with pytest.raises(Cancelled):
        refine_mesh(start, f, camera, mask, normals, RefineConfig(iterations=40, size=64, report_every=10), ctx=ctx)
    assert seen == [0, 10]


def test_refinement_refuses_unusable_inputs(scene):
    (_, f), start, camera, mask, normals = scene
    with pytest.raises(BadInput, match="camera's image size"):
        refine_mesh(start, f, camera, mask[:50], normals[:50])
    with pytest.raises(BadInput, match="empty"):
        refine_mesh(start, f, camera, np.zeros_like(mask), normals)
    with pytest.raises(BadInput, match="faces"):
        refine_mesh(start, f + len(start), camera, mask, normals)
    with pytest.raises(BadInput, match="aligned camera"):
        refine_mesh(start, f, {"rotation": 1}, mask, normals)
    with pytest.raises(BadInput, match="iterations"):
        refine_mesh(start, f, camera, mask, normals, RefineConfig(iterations=-1))


def test_confidence_comes_from_the_alignment_scores():
    assert Confidence().check({"iou": 0.97, "normal_agreement": 0.9}) == (True, "confident")
    ok, why = Confidence().check({"iou": 0.6, "normal_agreement": 0.9})
    assert not ok and "IoU" in why
    ok, why = Confidence().check({"iou": 0.95, "normal_agreement": 0.3})
    assert not ok and "normal agreement" in why
    assert not Confidence().check({})[0]


def test_connectivity_of_a_tetrahedron():
    faces = np.array([[0, 2, 1], [0, 1, 3], [1, 2, 3], [0, 3, 2]])
    edges, edge_faces = unique_edges(faces)
    assert len(edges) == 6 and (edge_faces >= 0).all()  # closed: every edge has two faces
    open_edges, open_faces = unique_edges(faces[:1])
    assert len(open_edges) == 3 and (open_faces[:, 1] == -1).all()
    lap = connectivity(faces, 4, torch.device("cpu")).laplacian
    flat = torch.sparse.mm(lap, torch.ones(4, 1))
    assert torch.allclose(flat, torch.zeros(4, 1), atol=1e-6)  # a constant height costs nothing
