"""Heun's second-order sampler for the rectified flow, beside the release's Euler sampler.

Same time grid (``flow_time_grid``: ``linspace(1, 0, steps + 1)`` warped by ``rescale_t``), same guidance
(``(1 + w) v(cond) - w v(neg)`` wherever the evaluated time lies in ``cfg_interval``), same model calls
``model(x, 1000 t, cond)``. Each step evaluates the velocity twice: a predictor at ``(x, t)`` and a corrector
at the Euler guess ``(x - h v1, t_next)``; the step averages them: ``x_next = x - h (v1 + v2) / 2`` with
``h = t - t_next``. The corrector at ``t_next`` is guided when ``t_next`` is in the interval, so a Heun step
costs two to four forwards (``heun_forward_passes``). Every step is a Heun step, the last one included: the
flow's velocity is defined at t = 0 (no ``1 / sigma`` as in diffusion samplers).

Multi-view conditioning follows ``sampling.sample_flow_euler_views``: in ``stochastic`` mode both evaluations
of step i use view ``view_order(steps, V)[i]``; ``multidiffusion`` averages every view's velocity in both.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .sampling import (
    DEFAULT_MULTIVIEW_MODE,
    ModelFn,
    SamplerParams,
    StepCallback,
    flow_time_grid,
    forward_passes,
    guided_velocity,
    multiview_velocity,
    sample_flow_euler_views,
    single_view,
    uses_guidance,
    view_order,
)
from .speed_options import SAMPLERS

Velocity = Callable[[torch.Tensor, float, int], torch.Tensor]
"(x, t in [0, 1], step index) -> guided velocity like x."


def heun_forward_passes(params: SamplerParams) -> int:
    """Model forwards one Heun run costs: per step the predictor at t and the corrector at t_next, each
    doubled when guided."""
    grid = flow_time_grid(params.steps, params.rescale_t)
    cost = 0
    for t_now, t_next in zip(grid[:-1], grid[1:]):
        for t in (t_now, t_next):
            cost += 2 if uses_guidance(t, params.cfg_strength, params.cfg_interval) else 1
    return cost


def sampler_forward_passes(sampler: str, params: SamplerParams) -> int:
    """Forwards of one run of ``sampler`` ("euler" or "heun") with ``params``."""
    check_sampler(sampler)
    return heun_forward_passes(params) if sampler == "heun" else forward_passes(params)


def check_sampler(sampler: str) -> None:
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler {sampler!r} is not one of {', '.join(SAMPLERS)}")


def heun_integrate(velocity: Velocity, noise: torch.Tensor, grid: list[float],
                   callback: StepCallback | None = None) -> torch.Tensor:
    """Heun steps along ``grid`` (from 1 down to 0) from ``noise``; ``callback(step, steps)`` after each."""
    steps = len(grid) - 1
    x = noise
    for i, (t_now, t_next) in enumerate(zip(grid[:-1], grid[1:])):
        h = t_now - t_next
        v1 = velocity(x, t_now, i).to(x.dtype)
        v2 = velocity(x - h * v1, t_next, i).to(x.dtype)
        x = x - h * 0.5 * (v1 + v2)
        if callback is not None:
            callback(i + 1, steps)
    return x


def sample_flow_heun(model: ModelFn, noise: torch.Tensor, cond: torch.Tensor, neg_cond: torch.Tensor, *,
                     steps: int, cfg_strength: float, cfg_interval: tuple[float, float] = (0.5, 1.0),
                     rescale_t: float = 3.0, batch_cfg: bool = True,
                     callback: StepCallback | None = None) -> torch.Tensor:
    """``sampling.sample_flow_euler``'s contract, integrated with Heun steps."""

    def velocity(x: torch.Tensor, t_now: float, _: int) -> torch.Tensor:
        t = torch.full((cond.shape[0],), 1000.0 * t_now, dtype=torch.float32, device=cond.device)
        if uses_guidance(t_now, cfg_strength, cfg_interval):
            return guided_velocity(model, x, t, cond, neg_cond, cfg_strength, batch_cfg)
        return model(x, t, cond)

    return heun_integrate(velocity, noise, flow_time_grid(steps, rescale_t), callback)


def sample_flow_heun_views(model: ModelFn, noise: torch.Tensor, conds: torch.Tensor, neg_cond: torch.Tensor,
                           *, mode: str = DEFAULT_MULTIVIEW_MODE, steps: int, cfg_strength: float,
                           cfg_interval: tuple[float, float] = (0.5, 1.0), rescale_t: float = 3.0,
                           batch_cfg: bool = True, callback: StepCallback | None = None) -> torch.Tensor:
    """``sampling.sample_flow_euler_views``'s contract (``conds [V, ...]``), integrated with Heun steps."""
    if single_view(mode, conds):
        return sample_flow_heun(model, noise, conds, neg_cond, steps=steps, cfg_strength=cfg_strength,
                                cfg_interval=cfg_interval, rescale_t=rescale_t, batch_cfg=batch_cfg,
                                callback=callback)
    order = view_order(steps, conds.shape[0])

    def velocity(x: torch.Tensor, t_now: float, i: int) -> torch.Tensor:
        t = torch.full((1,), 1000.0 * t_now, dtype=torch.float32, device=conds.device)
        guided = uses_guidance(t_now, cfg_strength, cfg_interval)
        if mode == "multidiffusion":
            return multiview_velocity(model, x, t, conds, neg_cond, cfg_strength, guided, batch_cfg)
        cond = conds[order[i]:order[i] + 1]
        return guided_velocity(model, x, t, cond, neg_cond, cfg_strength, batch_cfg) if guided else model(x, t, cond)

    return heun_integrate(velocity, noise, flow_time_grid(steps, rescale_t), callback)


def views_sampler(sampler: str) -> Callable[..., torch.Tensor]:
    """The multi-view sampling function of ``sampler``: the release's Euler one, or Heun's."""
    check_sampler(sampler)
    return sample_flow_heun_views if sampler == "heun" else sample_flow_euler_views
