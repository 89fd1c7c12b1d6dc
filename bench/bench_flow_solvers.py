"""Solution error of the Euler and Heun flow samplers against forwards spent, on one network and one noise.

The network is a mid-size random sparse-structure flow (``MID``: width 256, 8 blocks, 4 heads, patch 2, so the
real latent [1, 8, 16, 16, 16] in 512 tokens, conditioned on 1374 random tokens of width 1024 as DINOv2's);
``--size tiny`` takes the tests' tiny flow instead and runs in seconds. Guidance as the app: strength 3 for
t in [0.5, 1], ``rescale_t`` 3. The reference is the exact ODE solution, approximated by Heun with
``--reference`` steps (its own error is printed: the distance to Heun at half those steps). Each row: sampler,
steps, model forwards, relative L2 distance of the final latent to the reference and to the official path
(Euler 50). The cross-attention K/V cache (exact) is on, to halve the bench's time; no other setting differs.

Run: ``nice -n 10 .venv/bin/python bench/bench_flow_solvers.py`` (``--size tiny``; ``--threads N``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.models.configs import VARIANTS  # noqa: E402
from backend.models.loading import build_network  # noqa: E402
from backend.sampling import SamplerParams, sample_flow_euler  # noqa: E402
from backend.sampling_heun import sample_flow_heun, sampler_forward_passes  # noqa: E402

MID = dataclasses.replace(VARIANTS["ss_flow_normal_dit_L_16l8_fp16"], model_channels=256, num_blocks=8,
                          num_heads=4, patch_size=2, use_fp16=False)
"The mid-size random ss-flow: the real latent and condition shapes, a 1/4-width, 1/3-depth torso, 512 tokens."
GUIDANCE = SamplerParams(steps=50, cfg_strength=3.0)
EULER_STEPS = (4, 6, 8, 12, 16, 25, 50)
HEUN_STEPS = (2, 3, 4, 6, 8, 12, 25)


def build_flow(size: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """(model, noise [1, 8, 16, 16, 16], cond [1, Lc, Cc]) of ``size`` ("mid" or "tiny"), seeded."""
    torch.manual_seed(seed)
    config = MID if size == "mid" else VARIANTS["tiny_ss_flow"]
    model = build_network(config, "cpu").eval()
    model.set_context_cache(2)  # cond and the zero uncond: K/V once per run (exact)
    cond_shape = (1, 1374, 1024) if size == "mid" else (1, 7, 32)
    generator = torch.Generator().manual_seed(seed + 1)
    noise = torch.randn(1, 8, 16, 16, 16, generator=generator)
    cond = torch.randn(*cond_shape, generator=generator)
    return model, noise, cond


def solve(model: nn.Module, noise: torch.Tensor, cond: torch.Tensor, sampler: str, steps: int,
          cfg_strength: float = 3.0) -> torch.Tensor:
    """The structure stage's final latent with ``sampler`` and ``steps`` (the app's interval and rescale_t)."""
    fn = sample_flow_heun if sampler == "heun" else sample_flow_euler
    neg = torch.zeros_like(cond)
    with torch.inference_mode():
        return fn(model, noise, cond, neg, steps=steps, cfg_strength=cfg_strength, cfg_interval=(0.5, 1.0),
                  rescale_t=3.0, batch_cfg=False)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b||."""
    return float((a - b).norm() / b.norm())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("mid", "tiny"), default="mid")
    parser.add_argument("--reference", type=int, default=100, help="Heun steps of the reference solution")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, noise, cond = build_flow(args.size)
    start = time.perf_counter()
    reference = solve(model, noise, cond, "heun", args.reference)
    per_forward = (time.perf_counter() - start) / sampler_forward_passes("heun", dataclasses.replace(
        GUIDANCE, steps=args.reference))
    half = solve(model, noise, cond, "heun", args.reference // 2)
    official = solve(model, noise, cond, "euler", 50)
    print(f"{args.size} ss-flow, {torch.get_num_threads()} threads, {per_forward:.3f} s/forward; reference Heun "
          f"{args.reference} steps (its distance to Heun {args.reference // 2}: {rel(half, reference):.2e}); "
          f"official Euler 50 vs reference: {rel(official, reference):.4f}")
    print(f"{'sampler':8s} {'steps':>5s} {'forwards':>8s} {'vs exact':>9s} {'vs official':>11s}")
    for sampler, steps_list in (("euler", EULER_STEPS), ("heun", HEUN_STEPS)):
        for steps in steps_list:
            out = official if (sampler, steps) == ("euler", 50) else solve(model, noise, cond, sampler, steps)
            forwards = sampler_forward_passes(sampler, dataclasses.replace(GUIDANCE, steps=steps))
            print(f"{sampler:8s} {steps:5d} {forwards:8d} {rel(out, reference):9.4f} {rel(out, official):11.4f}")


if __name__ == "__main__":
    main()
