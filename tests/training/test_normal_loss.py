"""The normal regulariser: exact on linear fields, gradcheck-clean in float64 w.r.t. the logits, the latent and
the predicted velocity (through the clean-latent estimate and the decoder)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from backend.models.configs import VARIANTS
from backend.models.testing import random_network
from training.flow_matching import diffuse, predicted_x0
from training.normal_loss import field_and_gradient, field_normals, normal_loss


def _decode(decoder: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
    """The structure decoder's forward minus its float32 casts (so float64 stays float64)."""
    h = decoder.middle_block(decoder.input_layer(z))
    for block in decoder.blocks:
        h = block(h)
    return decoder.out_layer(h)


def _linear_field(a: torch.Tensor, r: int) -> torch.Tensor:
    c = (torch.arange(r, dtype=torch.float64) + 0.5) / r - 0.5
    x, y, z = torch.meshgrid(c, c, c, indexing="ij")
    return (a[0] * x + a[1] * y + a[2] * z)[None]  # [1, R, R, R]


def test_a_linear_field_has_its_exact_value_gradient_and_normal():
    a = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    points = (torch.rand(1, 50, 3, dtype=torch.float64) - 0.5) * 0.85
    value, grad = field_and_gradient(_linear_field(a, 8), points)
    assert torch.allclose(grad, a.expand_as(grad), atol=1e-12)
    assert torch.allclose(value, (points * a).sum(-1), atol=1e-12)
    assert torch.allclose(field_normals(_linear_field(a, 8), points), -a / a.norm(), atol=1e-12)


def test_a_sphere_of_logits_has_radial_normals():
    c = (torch.arange(32, dtype=torch.float64) + 0.5) / 32 - 0.5
    x, y, z = torch.meshgrid(c, c, c, indexing="ij")
    field = (0.3 - torch.sqrt(x**2 + y**2 + z**2))[None]  # positive inside
    n = torch.nn.functional.normalize(torch.randn(1, 200, 3, dtype=torch.float64), dim=-1)
    assert normal_loss(field, 0.3 * n, n) < 1e-3


def test_the_gradient_passes_gradcheck_in_float64():
    grid = torch.randn(2, 5, 5, 5, dtype=torch.float64, requires_grad=True)
    points = torch.rand(2, 9, 3, dtype=torch.float64) - 0.5
    normals = torch.nn.functional.normalize(torch.randn(2, 9, 3, dtype=torch.float64), dim=-1)
    weights = torch.tensor([1.0, 0.5], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda g: normal_loss(g, points, normals, weights), (grid,))


def _small_decoder(seed: int):  # noqa: ANN202
    """A random two-level structure decoder in float64, frozen (a latent [1, 8, 2, 2, 2] decodes to 4^3)."""
    config = dataclasses.replace(VARIANTS["tiny_ss_dec"], channels=(4, 2), num_res_blocks=1,
                                 num_res_blocks_middle=0)
    decoder, _ = random_network(config, seed=seed)
    return decoder.double().requires_grad_(False)


@pytest.mark.usefixtures("one_torch_thread")
def test_the_regulariser_through_the_decoder_passes_gradcheck():
    """latent -> structure decoder (float64) -> logits -> normal loss, differentiated w.r.t. the latent."""
    decoder = _small_decoder(seed=3)
    latent = torch.randn(1, 8, 2, 2, 2, dtype=torch.float64, requires_grad=True)  # decodes to 4^3
    points = (torch.rand(1, 6, 3, dtype=torch.float64) - 0.5) * 0.6
    normals = torch.nn.functional.normalize(torch.randn(1, 6, 3, dtype=torch.float64), dim=-1)

    with torch.no_grad():
        assert torch.allclose(_decode(decoder, latent).float(), decoder.float()(latent.float()), atol=1e-4)
    decoder.double()
    assert torch.autograd.gradcheck(lambda z: normal_loss(_decode(decoder, z)[:, 0], points, normals), (latent,))


@pytest.mark.usefixtures("one_torch_thread")
def test_the_regulariser_passes_gradcheck_wrt_the_predicted_velocity():
    """What the trainer differentiates: velocity -> clean-latent estimate -> decoder -> logits -> normal loss."""
    decoder = _small_decoder(seed=4)
    g = torch.Generator().manual_seed(5)
    x0, noise = (torch.randn(2, 8, 2, 2, 2, generator=g, dtype=torch.float64) for _ in range(2))
    t = torch.tensor([0.3, 0.8], dtype=torch.float64)
    x_t = diffuse(x0, noise, t, 1e-5)
    velocity = (noise - x0 + 0.1 * torch.randn(x0.shape, generator=g, dtype=torch.float64)).requires_grad_(True)
    points = (torch.rand(2, 6, 3, generator=g, dtype=torch.float64) - 0.5) * 0.6
    normals = torch.nn.functional.normalize(torch.randn(2, 6, 3, generator=g, dtype=torch.float64), dim=-1)
    weights = torch.tensor([1.0, 0.5], dtype=torch.float64)

    def loss(v: torch.Tensor) -> torch.Tensor:
        logits = _decode(decoder, predicted_x0(x_t, v, t, 1e-5))
        return normal_loss(logits[:, 0], points, normals, weights)

    assert torch.autograd.gradcheck(loss, (velocity,))
