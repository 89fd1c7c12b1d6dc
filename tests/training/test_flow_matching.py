"""The training convention agrees with the engine's sampler, and a sample's draws depend on its seed only."""

from __future__ import annotations

import torch

from backend.sampling import sample_flow_euler
from training.flow_matching import diffuse, draw_sample, predicted_x0, target_velocity

SIGMA = 1e-5


def test_the_clean_estimate_inverts_the_diffusion():
    x0, noise = torch.randn(3, 8, 4, 4, 4, dtype=torch.float64), torch.randn(3, 8, 4, 4, 4, dtype=torch.float64)
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    x_t = diffuse(x0, noise, t, SIGMA)
    assert torch.allclose(predicted_x0(x_t, target_velocity(x0, noise, SIGMA), t, SIGMA), x0, atol=1e-12)


def test_the_target_is_the_time_derivative_of_the_path():
    x0, noise = torch.randn(1, 8), torch.randn(1, 8)
    t, h = torch.tensor([0.4], dtype=torch.float64), 1e-6
    x0, noise = x0.double(), noise.double()
    derivative = (diffuse(x0, noise, t + h, SIGMA) - diffuse(x0, noise, t - h, SIGMA)) / (2 * h)
    assert torch.allclose(derivative, target_velocity(x0, noise, SIGMA), atol=1e-8)


def test_the_engine_sampler_driven_by_the_ideal_velocity_lands_on_the_data():
    """For one data point the ideal model is known in closed form; the engine's Euler sampler, calling it as
    it calls the networks (``model(x, 1000 t, cond)``), must reach that point: same convention both sides."""
    x0 = torch.randn(1, 8, 16, 16, 16)

    def ideal(x: torch.Tensor, t1000: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        t = (t1000 / 1000.0).view(-1, 1, 1, 1, 1)
        noise = (x - (1 - t) * x0) / (SIGMA + (1 - SIGMA) * t)
        return target_velocity(x0, noise, SIGMA)

    cond = torch.zeros(1, 4, 32)
    out = sample_flow_euler(ideal, torch.randn(1, 8, 16, 16, 16), cond, cond, steps=12, cfg_strength=0.0)
    assert torch.allclose(out, x0, atol=1e-3)


def test_a_samples_draws_depend_only_on_its_seed():
    a, b = draw_sample(7, (8, 2, 2, 2), 1.0, 1.0, 0.1), draw_sample(7, (8, 2, 2, 2), 1.0, 1.0, 0.1)
    assert torch.equal(a.noise, b.noise) and a.t == b.t and a.drop_cond == b.drop_cond and 0 < a.t < 1
    ts = torch.tensor([draw_sample(s, (1,), 1.0, 1.0, 0.1).t for s in range(2000)])
    drops = sum(draw_sample(s, (1,), 1.0, 1.0, 0.1).drop_cond for s in range(2000))
    assert abs(torch.logit(ts).mean() - 1.0) < 0.1 and abs(torch.logit(ts).std() - 1.0) < 0.1  # logit-normal(1, 1)
    assert 140 < drops < 260  # p_uncond 0.1
