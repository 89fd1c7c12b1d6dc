"""The flow sampler: published time grid, guidance interval, batched = separate passes, seeds, cancel."""

from __future__ import annotations

import pytest
import torch

from backend.errors import Cancelled
from backend.sampling import (
    LATENT_DEFAULTS,
    STRUCTURE_DEFAULTS,
    SamplerParams,
    draw_official_noise,
    flow_time_grid,
    forward_passes,
    guided_velocity,
    sample_flow_euler,
    uses_guidance,
)


def test_time_grid_matches_the_published_formula():
    grid = flow_time_grid(6, 3.0)
    assert grid == pytest.approx([1.0, 0.9375, 0.857142857, 0.75, 0.6, 0.375, 0.0], abs=1e-6)
    assert flow_time_grid(4, 1.0) == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])


def test_guidance_only_inside_the_interval():
    grid = flow_time_grid(50, 3.0)[:-1]
    assert sum(uses_guidance(t, 3.0, (0.5, 1.0)) for t in grid) == 38  # the release's 88 forwards for 50 steps
    assert sum(uses_guidance(t, 3.0, (0.5, 1.0)) for t in flow_time_grid(6, 3.0)[:-1]) == 5
    assert not uses_guidance(0.9, 0.0, (0.5, 1.0))


class ToyModel(torch.nn.Module):
    """A velocity that depends on x, t and cond, so guidance and batching are visible."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(8, 8, generator=torch.Generator().manual_seed(0)))
        self.calls = 0

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        flat = x.reshape(x.shape[0], 8, -1)  # [B, 8, L]
        ones = [1] * (x.dim() - 1)
        scale = (t / 1000.0).view(-1, *ones) + cond.mean(dim=(1, 2)).view(-1, *ones)
        return torch.einsum("ij,bjl->bil", self.w, flat).reshape(x.shape) * 0.1 + scale


def test_batched_and_separate_guidance_agree():
    model = ToyModel()
    x = torch.randn(1, 8, 4, 4, 4)
    cond, neg = torch.randn(1, 5, 16), torch.zeros(1, 5, 16)
    t = torch.tensor([700.0])
    batched = guided_velocity(model, x, t, cond, neg, 3.0, batch_cfg=True)
    separate = guided_velocity(model, x, t, cond, neg, 3.0, batch_cfg=False)
    assert torch.allclose(batched, separate, atol=1e-6)
    a = sample_flow_euler(model, x, cond, neg, steps=6, cfg_strength=3.0, batch_cfg=True)
    b = sample_flow_euler(model, x, cond, neg, steps=6, cfg_strength=3.0, batch_cfg=False)
    assert torch.allclose(a, b, atol=1e-5)


def test_forward_count_follows_the_interval():
    model = ToyModel()
    x, cond = torch.randn(1, 8, 2, 2, 2), torch.randn(1, 3, 4)
    sample_flow_euler(model, x, cond, torch.zeros_like(cond), steps=6, cfg_strength=3.0, batch_cfg=False)
    assert model.calls == 11  # 6 conditional + 5 unconditional, as the release


def test_euler_step_on_a_known_field():
    # v = x - x0 target: for the constant field v = c the sample is x1 - c (t from 1 to 0)
    c = torch.full((1, 8, 1, 1, 1), 0.25)
    out = sample_flow_euler(lambda x, t, cond: c.expand_as(x), torch.ones(1, 8, 1, 1, 1), torch.zeros(1, 1, 1),
                            torch.zeros(1, 1, 1), steps=7, cfg_strength=0.0)
    assert torch.allclose(out, torch.full_like(out, 0.75))


def test_callback_reports_steps_and_can_cancel():
    seen = []

    def callback(i: int, n: int) -> None:
        seen.append((i, n))
        if i == 2:
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        sample_flow_euler(ToyModel(), torch.randn(1, 8, 2, 2, 2), torch.zeros(1, 1, 1), torch.zeros(1, 1, 1),
                          steps=6, cfg_strength=3.0, callback=callback)
    assert seen == [(1, 6), (2, 6)]


def test_official_noise_order_equals_global_seeding():
    structure, latent = draw_official_noise(123, lambda s: 57)
    torch.manual_seed(123)
    assert torch.equal(structure, torch.randn(1, 8, 16, 16, 16))
    assert torch.equal(latent, torch.randn(57, 8))


def test_forward_pass_counts_match_the_brief():
    assert forward_passes(STRUCTURE_DEFAULTS) == 88 and forward_passes(LATENT_DEFAULTS) == 11
    assert forward_passes(SamplerParams(steps=25, cfg_strength=5.0)) == 44
    assert forward_passes(SamplerParams(steps=12, cfg_strength=0.0)) == 12  # no guidance, no second pass


class ToySparseModel:
    """Per-voxel rows [B * N, 8] with ``len(t)`` samples, as the pipeline's sparse adapter presents them."""

    def __init__(self) -> None:
        self.w = torch.randn(8, 8, generator=torch.Generator().manual_seed(1))
        self.batches: list[int] = []

    def __call__(self, feats: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        b = len(t)
        self.batches.append(b)
        rows = feats.reshape(b, -1, 8)  # [B, N, 8]
        out = rows @ self.w * 0.1 + (t / 1000.0)[:, None, None] + cond.mean(dim=(1, 2))[:, None, None]
        return out.reshape(feats.shape)


def test_sparse_rows_batch_like_dense_samples():
    model = ToySparseModel()
    noise, cond = torch.randn(37, 8), torch.randn(1, 5, 16)
    a = sample_flow_euler(model, noise, cond, torch.zeros_like(cond), steps=6, cfg_strength=3.0)
    assert model.batches == [2] * 5 + [1]  # guided steps batched as one pass of two
    b = sample_flow_euler(model, noise, cond, torch.zeros_like(cond), steps=6, cfg_strength=3.0, batch_cfg=False)
    assert torch.allclose(a, b, atol=1e-5)


def test_same_seed_same_sample():
    model = ToyModel()
    cond = torch.randn(1, 5, 16)

    def run(seed: int) -> torch.Tensor:
        noise, _ = draw_official_noise(seed, lambda s: 0)
        return sample_flow_euler(model, noise, cond, torch.zeros_like(cond), steps=4, cfg_strength=3.0)

    assert torch.equal(run(7), run(7)) and not torch.equal(run(7), run(8))
