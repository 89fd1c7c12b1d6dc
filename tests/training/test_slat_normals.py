"""The latent stage's normal regulariser: exact on linear fields, engine-like averaging, gradcheck in float64
w.r.t. the corner SDF and w.r.t. the predicted velocity through the clean-latent estimate and the mesh decoder."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from backend.mesh.decoder_layout import CORNERS
from backend.models.configs import VARIANTS
from backend.models.testing import random_network
from backend.nn.embeddings import absolute_position_embedding
from backend.nn.sparse_tensor import SparseTensor
from training.flow_matching import diffuse, predicted_x0
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


def _decode_float64(decoder: torch.nn.Module, x: SparseTensor) -> SparseTensor:
    """``SLatMeshDecoder.forward`` minus its float32 casts (so float64 stays float64)."""
    h = decoder.input_layer(x)
    h = h.replace(h.feats + absolute_position_embedding(x.coords[:, 1:], decoder.config.model_channels).double())
    for block in decoder.blocks:
        h = block(h)
    for up in decoder.upsample:
        h = up(h)
    return decoder.out_layer(h)


@pytest.mark.usefixtures("one_torch_thread")
def test_the_regulariser_passes_gradcheck_wrt_the_predicted_velocity():
    """What the trainer differentiates: velocity -> clean-latent estimate -> de-normalisation -> mesh decoder
    (one swin block, two subdivisions: 2 voxels -> 128 cubes at 256^3) -> averaged corner SDF -> normal loss."""
    config = dataclasses.replace(VARIANTS["tiny_mesh_dec"], num_blocks=1)
    decoder, _ = random_network(config, seed=5)
    decoder = decoder.requires_grad_(False)
    coords = torch.tensor([[0, 31, 31, 31], [0, 32, 31, 31]], dtype=torch.int32)
    g = torch.Generator().manual_seed(0)
    x0, noise = (torch.randn(2, 8, generator=g, dtype=torch.float64) for _ in range(2))
    t = torch.full((2,), 0.3, dtype=torch.float64)
    mean, std = 0.1 * torch.randn(8, generator=g, dtype=torch.float64), 1.0 + 0.2 * torch.rand(8, generator=g)
    x_t = diffuse(x0, noise, t, 1e-5)
    velocity = (noise - x0 + 0.1 * torch.randn(2, 8, generator=g, dtype=torch.float64)).requires_grad_(True)
    inside = torch.rand(1, 10, 3, generator=g, dtype=torch.float64) * torch.tensor([1.9, 0.95, 0.95]) + 0.02
    points = (31.0 + inside) / 64 - 0.5  # in the two voxels' cubes
    normals = torch.nn.functional.normalize(torch.randn(1, 10, 3, generator=g, dtype=torch.float64), dim=-1)
    with torch.no_grad():
        x = SparseTensor(coords, predicted_x0(x_t, velocity, t, 1e-5) * std + mean)
        reference = decoder(x.replace(x.feats.float())).feats
        assert torch.allclose(_decode_float64(decoder.double(), x).feats.float(), reference, atol=1e-4)

    def loss(v: torch.Tensor) -> torch.Tensor:
        decoded = _decode_float64(decoder, SparseTensor(coords, predicted_x0(x_t, v, t, 1e-5) * std + mean))
        rows = decoded.sample_rows()
        return decoded_normal_loss([decoded.coords[r, 1:] for r in rows], [decoded.feats[r, :8] for r in rows],
                                   points, normals, torch.ones(1, dtype=torch.float64))

    assert torch.autograd.gradcheck(loss, (velocity,), eps=1e-6, atol=1e-5)


@pytest.mark.usefixtures("one_torch_thread")
def test_a_fitted_mesh_decoder_decodes_toy_latents_near_the_true_normals(tmp_path):
    """A random tiny decoder's normals sit near 90 degrees or worse off; its fitted SDF read-out brings the toy
    latents' decoded normals close (22-33 degrees measured, on the fitted and on other shapes)."""
    from training.slat_data import SLatAssetFolder
    from training.slat_synthetic import fit_mesh_decoder, make_slat_dataset

    shapes = make_slat_dataset(tmp_path / "train", 2, points=256)
    make_slat_dataset(tmp_path / "held", 1, points=256, seed=99)
    decoder, _ = random_network(dataclasses.replace(VARIANTS["tiny_mesh_dec"], num_blocks=1), seed=0)
    mean, std = torch.zeros(8), torch.ones(8)

    def error(folder) -> float:
        asset = SLatAssetFolder(folder, need_surface=True)[0]
        coords = torch.cat([torch.zeros(len(asset.coords), 1, dtype=torch.int32), asset.coords], 1)
        with torch.no_grad():
            decoded = decoder(SparseTensor(coords, asset.feats))
        angles, coverage = angular_errors_degrees(decoded.coords[:, 1:], decoded.feats[:, :8], asset.points,
                                                  asset.normals)
        assert coverage == 1.0
        return float(angles.mean())

    before = error(tmp_path / "train")
    assert fit_mesh_decoder(decoder.float(), mean, std, tmp_path / "train", shapes) < 0.5
    assert before > 80.0 and error(tmp_path / "train") < 45.0 and error(tmp_path / "held") < 50.0
