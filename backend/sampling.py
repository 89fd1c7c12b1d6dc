"""Rectified-flow Euler sampling with classifier-free guidance inside a guidance interval.

The release's ``FlowEulerGuidanceIntervalSampler``: a time grid ``linspace(1, 0, steps + 1)`` warped by
``t' = r t / (1 + (r - 1) t)``; the model predicts a velocity ``v`` at ``(x_t, 1000 t)``; guidance
``v = (1 + w) v(cond) - w v(neg)`` applies only while ``t`` lies in ``cfg_interval``; the Euler step is
``x_{t_next} = x_t - (t - t_next) v``. ``sigma_min`` only enters the unused x0 prediction, so it is absent.

Batching design (``batch_cfg``): the state ``x`` is always a plain tensor whose first axis is "rows of the
sample": ``[1, C, D, H, W]`` for the dense structure latent, ``[N, C]`` (the features of N voxels) for the
sparse latent. Guidance stacks ``x`` twice along that axis, ``t`` and ``cond`` likewise (row block 0 = cond,
1 = uncond), makes one model call and splits the result in two halves. A model whose samples are not one row
each (a sparse model) is wrapped by its caller in an adapter that reads ``len(t)`` as the batch size and
attaches batch indices to the stacked rows (see ``pipelines/hi3dgen.py::SparseFlow``); the sampler itself
never sees sparse structures. ``batch_cfg=False`` runs the release's two batch-1 passes instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

ModelFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
StepCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class SamplerParams:
    """One stage's sampler settings (the release's pipeline.json keys)."""

    steps: int
    cfg_strength: float
    cfg_interval: tuple[float, float] = (0.5, 1.0)
    rescale_t: float = 3.0


STRUCTURE_DEFAULTS = SamplerParams(steps=50, cfg_strength=3.0)
"The official app's structure stage (pipeline.json itself says 25 steps at 5.0)."
LATENT_DEFAULTS = SamplerParams(steps=6, cfg_strength=3.0)
"The official app's latent stage."


def flow_time_grid(steps: int, rescale_t: float) -> list[float]:
    """``steps + 1`` times from 1 to 0, warped toward 1 by ``rescale_t`` (1 leaves them uniform)."""
    raw = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    return (rescale_t * raw / (1.0 + (rescale_t - 1.0) * raw)).tolist()


def forward_passes(params: SamplerParams) -> int:
    """Model forward passes one sampling run costs (a guided step counts two, batched or not)."""
    grid = flow_time_grid(params.steps, params.rescale_t)[:-1]
    return sum(2 if uses_guidance(t, params.cfg_strength, params.cfg_interval) else 1 for t in grid)


def uses_guidance(t: float, cfg_strength: float, cfg_interval: tuple[float, float]) -> bool:
    """Whether the step at time ``t`` runs the unconditional pass too."""
    return cfg_strength != 0.0 and cfg_interval[0] <= t <= cfg_interval[1]


def guided_velocity(model: ModelFn, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, neg_cond: torch.Tensor,
                    cfg_strength: float, batch_cfg: bool) -> torch.Tensor:
    """``(1 + w) v(cond) - w v(neg)``; with ``batch_cfg`` both passes run as one batch of two.

    ``x`` is either dense ``[1, ...]`` or per-token ``[N, C]`` (a sparse sample): batching stacks it along
    the first axis and the model sees ``t`` and ``cond`` with two rows (batch index 0 = cond, 1 = neg).
    """
    if batch_cfg:
        v = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([cond, neg_cond]))
        v_cond, v_neg = v.chunk(2)
    else:
        v_cond, v_neg = model(x, t, cond), model(x, t, neg_cond)
    return (1.0 + cfg_strength) * v_cond - cfg_strength * v_neg


def sample_flow_euler(model: ModelFn, noise: torch.Tensor, cond: torch.Tensor, neg_cond: torch.Tensor, *,
                      steps: int, cfg_strength: float, cfg_interval: tuple[float, float] = (0.5, 1.0),
                      rescale_t: float = 3.0, batch_cfg: bool = True,
                      callback: StepCallback | None = None) -> torch.Tensor:
    """Integrate from ``noise`` at t = 1 to a sample at t = 0; ``callback(step, steps)`` after each step.

    ``model(x, 1000 * t, cond)`` is called with ``t`` a float32 tensor with one entry per batch row of
    ``cond``. A callback may raise (e.g. ``Cancelled``) to stop between steps.
    """
    grid = flow_time_grid(steps, rescale_t)
    x = noise
    for i, (t_now, t_next) in enumerate(zip(grid[:-1], grid[1:])):
        t = torch.full((cond.shape[0],), 1000.0 * t_now, dtype=torch.float32, device=cond.device)
        if uses_guidance(t_now, cfg_strength, cfg_interval):
            v = guided_velocity(model, x, t, cond, neg_cond, cfg_strength, batch_cfg)
        else:
            v = model(x, t, cond)
        x = x - (t_now - t_next) * v.to(x.dtype)
        if callback is not None:
            callback(i + 1, steps)
    return x


def draw_official_noise(seed: int, voxel_count: Callable[[torch.Tensor], int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The release's two noise draws for ``seed``, in its order: structure ``[1, 8, 16, 16, 16]`` first,
    then latent ``[N, 8]`` where ``N = voxel_count(structure_noise)`` (the occupied voxels, known only after
    the structure stage). Equals ``torch.manual_seed(seed)`` followed by two global ``torch.randn`` calls."""
    generator = torch.Generator("cpu").manual_seed(seed)
    structure = torch.randn(1, 8, 16, 16, 16, generator=generator)
    latent = torch.randn(voxel_count(structure), 8, generator=generator)
    return structure, latent


MULTIVIEW_MODES = ("stochastic", "multidiffusion")
DEFAULT_MULTIVIEW_MODE = "stochastic"
"TRELLIS's ``run_multi_image`` default."


def view_order(steps: int, views: int) -> list[int]:
    """The view each step conditions on in ``stochastic`` mode: step i uses view ``i % views`` (as TRELLIS)."""
    return [i % views for i in range(steps)]


def multiview_velocity(model: ModelFn, x: torch.Tensor, t: torch.Tensor, conds: torch.Tensor,
                       neg_cond: torch.Tensor, cfg_strength: float, guided: bool,
                       batch_cfg: bool) -> torch.Tensor:
    """``multidiffusion``: the mean of the per-view velocities, then guidance against one negative pass:
    ``(1 + w) mean_k v(cond_k) - w v(neg)`` (equal to the mean of the per-view guided velocities).

    ``conds`` is ``[V, ...]``, ``neg_cond`` ``[1, ...]``, ``t`` ``[1]``; with ``batch_cfg`` every pass runs
    as one batch of ``V`` (+1) rows, else one batch-1 call per pass.
    """
    views = conds.shape[0]
    rows = torch.cat([conds, neg_cond]) if guided else conds
    if batch_cfg:
        v = model(torch.cat([x] * len(rows)), t.repeat(len(rows)), rows).chunk(len(rows))
    else:
        v = tuple(model(x, t, rows[k:k + 1]) for k in range(len(rows)))
    v_mean = sum(v[:views]) / views
    if not guided:
        return v_mean
    return (1.0 + cfg_strength) * v_mean - cfg_strength * v[views]


def single_view(mode: str, conds: torch.Tensor) -> bool:
    """Whether ``conds [V, ...]`` holds one view (the single-view sampler then runs); ``ValueError`` for an
    unknown multi-view ``mode``."""
    if mode not in MULTIVIEW_MODES:
        raise ValueError(f"multi-view mode {mode!r} is not one of {', '.join(MULTIVIEW_MODES)}")
    return conds.shape[0] == 1


def sample_flow_euler_views(model: ModelFn, noise: torch.Tensor, conds: torch.Tensor, neg_cond: torch.Tensor,
                            *, mode: str = DEFAULT_MULTIVIEW_MODE, steps: int, cfg_strength: float,
                            cfg_interval: tuple[float, float] = (0.5, 1.0), rescale_t: float = 3.0,
                            batch_cfg: bool = True, callback: StepCallback | None = None) -> torch.Tensor:
    """``sample_flow_euler`` conditioned on ``V`` views ``conds [V, ...]`` (``neg_cond [1, ...]``).

    ``stochastic``: step i runs the single-view guided step with view ``view_order(steps, V)[i]``.
    ``multidiffusion``: every step uses ``multiview_velocity``. One view is exactly ``sample_flow_euler``.
    """
    if single_view(mode, conds):
        return sample_flow_euler(model, noise, conds, neg_cond, steps=steps, cfg_strength=cfg_strength,
                                 cfg_interval=cfg_interval, rescale_t=rescale_t, batch_cfg=batch_cfg,
                                 callback=callback)
    grid = flow_time_grid(steps, rescale_t)
    order = view_order(steps, conds.shape[0])
    x = noise
    for i, (t_now, t_next) in enumerate(zip(grid[:-1], grid[1:])):
        t = torch.full((1,), 1000.0 * t_now, dtype=torch.float32, device=conds.device)
        guided = uses_guidance(t_now, cfg_strength, cfg_interval)
        if mode == "multidiffusion":
            v = multiview_velocity(model, x, t, conds, neg_cond, cfg_strength, guided, batch_cfg)
        else:
            cond = conds[order[i]:order[i] + 1]
            v = guided_velocity(model, x, t, cond, neg_cond, cfg_strength, batch_cfg) if guided else model(x, t, cond)
        x = x - (t_now - t_next) * v.to(x.dtype)
        if callback is not None:
            callback(i + 1, steps)
    return x
