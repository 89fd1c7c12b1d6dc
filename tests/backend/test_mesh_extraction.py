"""Surface extraction on analytic SDFs laid out as decoder outputs: closed, outward, the right volume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from backend.errors import EmptyResult
from backend.mesh.cleanup import CleanupOptions, clean_mesh, vertex_normals
from backend.mesh.decoder_layout import CORNERS
from backend.mesh.marching_cubes import extract_marching_cubes

RES = 64


def sphere(p: np.ndarray) -> np.ndarray:
    return np.linalg.norm(p, axis=-1) - 0.3


def torus(p: np.ndarray) -> np.ndarray:
    q = np.stack([np.linalg.norm(p[..., :2], axis=-1) - 0.25, p[..., 2]], -1)
    return np.linalg.norm(q, axis=-1) - 0.1


def rounded_box(p: np.ndarray) -> np.ndarray:
    q = np.abs(p) - np.array([0.3, 0.2, 0.15]) + 0.05
    return np.linalg.norm(np.maximum(q, 0.0), axis=-1) + np.minimum(q.max(-1), 0.0) - 0.05


def plate(p: np.ndarray) -> np.ndarray:
    q = np.abs(p) - np.array([0.35, 0.35, 0.04])
    return np.linalg.norm(np.maximum(q, 0.0), axis=-1) + np.minimum(q.max(-1), 0.0)


VOLUMES = {sphere: 4 / 3 * np.pi * 0.3**3, torus: 2 * np.pi**2 * 0.25 * 0.1**2,
           rounded_box: 0.5 * 0.3 * 0.2 - (4 - np.pi) * 0.05**2 * 0.3 * 0 + 0, plate: 0.7 * 0.7 * 0.08}


def decoder_outputs(sdf, res: int = RES) -> tuple[torch.Tensor, torch.Tensor]:
    """Occupied cubes (every cube with a corner inside, the band and the interior) and their 101 channels."""
    grid = np.stack(np.meshgrid(*[np.arange(res)] * 3, indexing="ij"), -1).reshape(-1, 3)  # [R^3, 3]
    corners = grid[:, None, :] + CORNERS.numpy()[None]  # [R^3, 8, 3]
    values = sdf(corners / res - 0.5)  # [R^3, 8] in object units
    occupied = (values < 1.5 / res).any(1)
    feats = np.zeros((occupied.sum(), 101), np.float32)
    feats[:, :8] = values[occupied] + 1.0 / res  # the decoder's sdf before the release's -1/res bias
    return torch.from_numpy(grid[occupied]), torch.from_numpy(feats)


def _box_volume() -> float:
    inner = np.array([0.25, 0.15, 0.1]) * 2  # the box shrunk by the radius, then Minkowski-summed with a ball
    a, b, c = inner
    r = 0.05
    return a * b * c + 2 * r * (a * b + b * c + a * c) + np.pi * r**2 * (a + b + c) + 4 / 3 * np.pi * r**3


VOLUMES[rounded_box] = _box_volume()


@pytest.mark.parametrize("sdf", [sphere, torus, rounded_box, plate], ids=lambda f: f.__name__)
def test_marching_cubes_closed_outward_accurate(sdf):
    cubes, feats = decoder_outputs(sdf)
    v, f = extract_marching_cubes(cubes, feats, RES)
    mesh = trimesh.Trimesh(v, f, process=True)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.volume > 0  # outward
    assert abs(mesh.volume - VOLUMES[sdf]) / VOLUMES[sdf] < 0.02, (mesh.volume, VOLUMES[sdf])


def test_empty_surface_is_an_actionable_error():
    cubes, feats = decoder_outputs(sphere)
    feats[:, :8] = 1.0  # everything outside
    with pytest.raises(EmptyResult) as info:
        extract_marching_cubes(cubes, feats, RES)
    assert "seed" in info.value.hint


def test_deformation_moves_vertices_within_half_a_cube():
    cubes, feats = decoder_outputs(sphere)
    v0, _ = extract_marching_cubes(cubes, feats, RES)
    feats[:, 8:32] = 10.0  # tanh -> 1: every corner moves +half a cube on each axis
    v1, _ = extract_marching_cubes(cubes, feats, RES)
    assert np.allclose(v1 - v0, 0.5 / RES, atol=1e-4)


def test_cleanup_drops_floaters_and_inner_shells_and_decimates():
    big = trimesh.creation.icosphere(subdivisions=4, radius=0.3)
    small = trimesh.creation.icosphere(subdivisions=0, radius=0.01)
    small.apply_translation([0.45, 0, 0])
    inner = trimesh.creation.icosphere(subdivisions=3, radius=0.2)
    inner.invert()  # a hollow's wall faces inward
    both = trimesh.util.concatenate([big, small, inner])
    v, f, n = clean_mesh(both.vertices.astype(np.float32), both.faces.astype(np.int32),
                         CleanupOptions(target_faces=1000))
    out = trimesh.Trimesh(v, f)
    assert len(out.split()) == 1 and out.volume > 0 and len(f) <= 1100
    assert np.allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-5)


def test_vertex_normals_point_outward_on_a_sphere():
    s = trimesh.creation.icosphere(subdivisions=3)
    n = vertex_normals(s.vertices.astype(np.float32), s.faces.astype(np.int32))
    assert (np.einsum("ij,ij->i", n, s.vertices / np.linalg.norm(s.vertices, axis=1, keepdims=True)) > 0.99).all()
