"""View alignment on shapes with known answers: render a random view, turn the mesh into another frame, and
ask the aligner for the camera. The full version (20 views per shape, figures) is bench/bench_align.py."""

from __future__ import annotations

import numpy as np
import pytest

from backend.align.align import AlignConfig, align_view
from backend.camera import Camera, rotation_angle
from backend.errors import BadInput
from backend.render.shade import render_normal_map
from tests.backend.shapes import SHAPES, random_rotation, random_view

SIZE = 96
CASES = [("suzanne", 0.0), ("suzanne", 40.0), ("chair", 40.0), ("bust", 0.0)]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def aligned(name: str, seed: int, fov_deg: float) -> tuple[float, float, Camera]:
    """(rotation error in degrees, IoU at the input's size, the camera) of one aligned random view."""
    rng = np.random.default_rng(seed)
    vertices, faces = SHAPES[name]()
    truth = random_view(rng, SIZE, fov_deg)
    mask, normals, _ = render_normal_map(vertices, faces, truth)
    turn = random_rotation(rng)  # the mesh handed over in another frame: the answer becomes R @ turn^T
    moved = (vertices @ turn.T).astype(np.float32)
    result = align_view(moved, faces, mask, normals, AlignConfig())
    got = render_normal_map(moved, faces, result.camera)[0]
    iou = float((got & mask).sum() / (got | mask).sum())
    return rotation_angle(truth.rotation @ turn.T, result.camera.rotation), iou, result.camera


@pytest.mark.parametrize(("name", "fov_deg"), CASES, ids=[f"{n}-{'ortho' if f == 0 else 'persp'}" for n, f in CASES])
def test_alignment_recovers_the_view(name: str, fov_deg: float):
    error, iou, camera = aligned(name, seed=len(name) + int(fov_deg), fov_deg=fov_deg)
    assert error <= 5.0 and iou >= 0.95, (error, iou)
    assert (camera.width, camera.height) == (SIZE, SIZE)


def test_alignment_refuses_unusable_inputs():
    vertices, faces = SHAPES["chair"]()
    mask = np.zeros((32, 32), bool)
    normals = np.zeros((32, 32, 3), np.float32)
    with pytest.raises(BadInput, match="empty"):
        align_view(vertices, faces, mask, normals)
    mask[8:24, 8:24] = True
    with pytest.raises(BadInput, match="same size"):
        align_view(vertices, faces, mask, normals[:16])
    with pytest.raises(BadInput, match="faces"):
        align_view(vertices, faces + len(vertices), mask, normals)
    with pytest.raises(BadInput, match="projection"):
        align_view(vertices, faces, mask, normals, AlignConfig(projection="fisheye"))
