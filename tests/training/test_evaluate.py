"""The structure stage's geometry evaluation: surface points of a logit field, and scores against the truth."""

from __future__ import annotations

import torch

from training.data import AssetFolder
from training.evaluate import geometry_scores, surface_crossings
from training.synthetic import cell_centres
from training.trainer import build_decoder

from .conftest import tiny_config


def _sphere_logits(radius: float, r: int) -> torch.Tensor:
    c = torch.from_numpy(cell_centres(r)).double()
    return radius - c.norm(dim=-1)  # [R, R, R], positive inside


def test_crossings_of_a_sphere_field_lie_on_the_sphere_with_radial_normals():
    points, normals = surface_crossings(_sphere_logits(0.3, 16))
    assert len(points) > 100
    assert (points.norm(dim=-1) - 0.3).abs().max() < 0.01  # linear interpolation of a distance field
    cos = (normals * points / points.norm(dim=-1, keepdim=True)).sum(-1)
    assert cos.min() > 0.95


def test_an_empty_field_has_no_surface():
    points, normals = surface_crossings(-torch.ones(8, 8, 8))
    assert points.shape == (0, 3) and normals.shape == (0, 3)


def test_an_assets_own_latent_scores_better_than_a_wrong_shape_or_none(toy_data):
    """Asset 0 (a sphere): its own latent, decoded, against a too-large sphere and an empty field."""
    decoder = build_decoder(tiny_config(), torch.device("cpu"))
    asset = AssetFolder(toy_data, need_surface=True)[0]
    with torch.no_grad():
        own = decoder(asset.latent[None])[0, 0]
    [good], [wrong], [empty] = (geometry_scores([f], toy_data, points=1024)
                                for f in (own, _sphere_logits(0.45, 16).float(), -torch.ones(16, 16, 16)))
    assert good["chamfer"] < wrong["chamfer"], (good, wrong)
    assert good["f_score"] > 0.5 > wrong["f_score"] and empty["f_score"] == 0.0
    assert good["normal_consistency"] > 0.8
