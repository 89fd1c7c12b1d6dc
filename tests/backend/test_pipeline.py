"""The geometry stage's own code paths on tiny networks loaded from a release-layout folder: noise order,
de-normalisation, guidance batching with the real networks, and the empty-structure error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from backend.devices import Placement
from backend.errors import EmptyResult
from backend.jobs import JobContext
from backend.models.testing import write_dinov2_folder, write_release_folder
from backend.pipelines.hi3dgen import GeometryModels, GeometryParams, SparseFlow, sample_latent, sample_structure
from backend.sampling import draw_official_noise, sample_flow_euler

CPU = Placement(torch.device("cpu"), torch.float32)
PARAMS = GeometryParams(seed=5, ss_steps=2, slat_steps=2)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> GeometryModels:
    root: Path = tmp_path_factory.mktemp("weights")
    write_release_folder(root / "trellis-normal")
    write_dinov2_folder(root / "dinov2")
    return GeometryModels.load(root / "trellis-normal", root / "dinov2", CPU)


def cond_of(models: GeometryModels) -> torch.Tensor:
    """Random condition tokens [1, 7, C] of the tiny configs' width (tiny_dinov2 / cond_channels: 32)."""
    return torch.randn(1, 7, 32, generator=torch.Generator().manual_seed(0))


class StillFlow(torch.nn.Module):
    """Zero velocity: the sampler returns its noise unchanged, so the noise itself can be inspected."""

    def forward(self, x, t, cond):  # noqa: ANN001, ANN201
        return x * 0 if isinstance(x, torch.Tensor) else x.replace(x.feats * 0)


def test_noise_is_drawn_in_the_official_order_and_denormalised(models, monkeypatch):
    seen: list[torch.Tensor] = []
    decoder = models.ss_decoder
    monkeypatch.setattr(models, "ss_flow", StillFlow())
    monkeypatch.setattr(models, "slat_flow", StillFlow())
    monkeypatch.setattr(models, "ss_decoder", lambda z: seen.append(z) or decoder(z))
    cond = cond_of(models)
    generator = torch.Generator("cpu").manual_seed(PARAMS.seed)
    coords = sample_structure(models, cond, generator, PARAMS, JobContext())
    slat = sample_latent(models, cond, coords, generator, PARAMS, JobContext())
    structure, latent = draw_official_noise(PARAMS.seed, lambda _: len(coords))
    assert torch.equal(seen[0], structure)
    mean, std = torch.tensor(models.pipeline.slat_mean), torch.tensor(models.pipeline.slat_std)
    assert torch.allclose(slat.feats, latent * std + mean, atol=1e-6)  # the published mean/std applied
    assert torch.equal(slat.coords, coords)


def test_empty_structure_is_an_actionable_error(models, monkeypatch):
    monkeypatch.setattr(models, "ss_decoder", lambda z: -torch.ones(1, 1, 64, 64, 64))
    with pytest.raises(EmptyResult) as info:
        sample_structure(models, cond_of(models), torch.Generator().manual_seed(0), PARAMS, JobContext())
    assert "seed" in info.value.hint


def test_batched_guidance_equals_separate_passes_on_the_real_networks(models):
    cond = cond_of(models)
    noise = torch.randn(1, 8, 16, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        kw = dict(steps=3, cfg_strength=3.0, cfg_interval=(0.5, 1.0), rescale_t=3.0)
        dense = [sample_flow_euler(models.ss_flow, noise, cond, torch.zeros_like(cond), batch_cfg=b, **kw)
                 for b in (True, False)]
        coords = torch.argwhere(torch.rand(1, 64, 64, 64, generator=torch.Generator().manual_seed(2)) < 0.01).int()
        feats = torch.randn(len(coords), 8, generator=torch.Generator().manual_seed(3))
        sparse = [sample_flow_euler(SparseFlow(models.slat_flow, coords), feats, cond, torch.zeros_like(cond),
                                    batch_cfg=b, **kw) for b in (True, False)]
    assert torch.allclose(dense[0], dense[1], atol=1e-4)
    assert torch.allclose(sparse[0], sparse[1], atol=1e-4)
