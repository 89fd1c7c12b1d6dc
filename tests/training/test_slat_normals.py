"""The latent stage's normal regulariser: exact on linear fields, gradcheck in float64, engine-like averaging."""

from __future__ import annotations

import torch

from backend.mesh.decoder_layout import CORNERS
from training.slat_normals import angular_errors_degrees, decoded_normal_loss, sdf_normals


def _block(origin: tuple[int, int, int], size: int) -> torch.Tensor:
    """[size^3, 3] cube positions of a block of cubes starting at ``origin``."""
    r = torch.arange(size)
    grid = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    return grid + torch.tensor(origin)


def _corner_positions(cubes: torch.Tensor, res: int) -> torch.Tensor:
    """[M, 8, 3] positions in [-0.5, 0.5]^3 of each cube's corners."""
    return (cubes[:, None, :] + CORNERS[None]).double() / res - 0.5


def test_a_linear_sdf_gives_its_gradient_direction_everywhere():
    res = 16
    cubes = _block((4, 4, 4), 4)
    direction = torch.tensor([0.3, -0.5, 0.8], dtype=torch.float64)
    sdf = (_corner_positions(cubes, res) * direction).sum(-1) + 0.01  # [M, 8]
    points = torch.rand(50, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3.9 / res
    points = points + 4.05 / res - 0.5
    normals, found = sdf_normals(cubes, sdf, points, res)
    assert found.all()
    assert torch.allclose(normals, (direction / direction.norm()).expand_as(normals), atol=1e-9)


def test_a_sphere_sdf_gives_radial_normals_and_missed_points_are_reported():
    res = 32
    cubes = _block((8, 8, 8), 16)
    sdf = _corner_positions(cubes, res).norm(dim=-1) - 0.15
    g = torch.Generator().manual_seed(1)
    n = torch.randn(200, 3, generator=g, dtype=torch.float64)
    n = n / n.norm(dim=1, keepdim=True)
    angles, coverage = angular_errors_degrees(cubes, sdf, 0.15 * n, n, res)
    assert coverage == 1.0 and float(angles.mean()) < 5.0 and float(angles.max()) < 10.0  # 4.8 cells
    outside = torch.tensor([[0.45, 0.45, 0.45]], dtype=torch.float64)
    _, found = sdf_normals(cubes, sdf, outside, res)
    assert not found.any()


def test_the_loss_gradient_passes_gradcheck_in_float64():
    res = 8
    cubes = _block((2, 2, 2), 2)  # 8 cubes sharing corners: the averaging is part of what is checked
    g = torch.Generator().manual_seed(2)
    sdf = torch.randn(len(cubes), 8, generator=g, dtype=torch.float64, requires_grad=True)
    points = (torch.rand(1, 12, 3, generator=g, dtype=torch.float64) * 1.9 + 2.05) / res - 0.5
    normals = torch.randn(1, 12, 3, generator=g, dtype=torch.float64)
    normals = normals / normals.norm(dim=-1, keepdim=True)
    weights = torch.ones(1, dtype=torch.float64)

    def loss(values: torch.Tensor) -> torch.Tensor:
        return decoded_normal_loss([cubes], [values], points, normals, weights, res)

    assert torch.autograd.gradcheck(loss, (sdf,), eps=1e-6, atol=1e-5)
