"""The normal regulariser: exact on linear fields, gradcheck-clean in float64, through the decoder too."""

from __future__ import annotations

import dataclasses

import torch

from backend.models.configs import VARIANTS
from backend.models.testing import random_network
from training.normal_loss import field_and_gradient, field_normals, normal_loss


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


def test_the_regulariser_through_the_decoder_passes_gradcheck():
    """latent -> structure decoder (float64) -> logits -> normal loss, differentiated w.r.t. the latent."""
    config = dataclasses.replace(VARIANTS["tiny_ss_dec"], channels=(4, 2), num_res_blocks=1,
                                 num_res_blocks_middle=0)
    decoder, _ = random_network(config, seed=3)
    decoder = decoder.double().requires_grad_(False)
    latent = torch.randn(1, 8, 2, 2, 2, dtype=torch.float64, requires_grad=True)  # decodes to 4^3
    points = (torch.rand(1, 6, 3, dtype=torch.float64) - 0.5) * 0.6
    normals = torch.nn.functional.normalize(torch.randn(1, 6, 3, dtype=torch.float64), dim=-1)

    def decode(z: torch.Tensor) -> torch.Tensor:  # the decoder's forward minus its float32 casts
        h = decoder.middle_block(decoder.input_layer(z))
        for block in decoder.blocks:
            h = block(h)
        return decoder.out_layer(h)

    with torch.no_grad():
        assert torch.allclose(decode(latent).float(), decoder.float()(latent.float()), atol=1e-4)  # fp32 convs
    decoder.double()
    assert torch.autograd.gradcheck(lambda z: normal_loss(decode(z)[:, 0], points, normals), (latent,))
