"""Solution error of the Euler and Heun flow samplers against forwards spent, on one network and one noise.

The network is a small random sparse-structure flow (``SIZES["small"]``: width 128, 4 blocks, patch 2, so the
real latent [1, 8, 16, 16, 16] in 512 tokens, conditioned on 1374 random tokens of width 1024 as DINOv2's);
``--size mid`` (width 256, 8 blocks) or ``tiny`` (the tests') instead. Guidance as the app: strength 3 for
t in [0.5, 1], ``rescale_t`` 3. The reference is the exact ODE solution, approximated by Heun with
``--reference`` steps (50: for a second-order solver its own error is about Heun 12's / 17). Each row: sampler,
steps, model forwards, relative L2 distance of the final latent to the reference and to the official path
(Euler 50). The cross-attention K/V cache (exact) is on, to halve the bench's time; no other setting differs.

Run: ``nice -n 10 .venv/bin/python bench/bench_flow_solvers.py`` (``--size mid|tiny``; ``--threads N``).
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

SIZES = {
    "mid": dataclasses.replace(VARIANTS["ss_flow_normal_dit_L_16l8_fp16"], model_channels=256, num_blocks=8,
                               num_heads=4, patch_size=2, use_fp16=False),
    "small": dataclasses.replace(VARIANTS["ss_flow_normal_dit_L_16l8_fp16"], model_channels=128, num_blocks=4,
                                 num_heads=2, patch_size=2, use_fp16=False),
    "tiny": VARIANTS["tiny_ss_flow"],
}
"""Random ss-flows on the real latent [1, 8, 16, 16, 16]: mid (width 256, 8 blocks, patch 2: 512 tokens), small
(width 128, 4 blocks, 512 tokens), both conditioned on 1374 tokens of width 1024 as DINOv2's; tiny (the tests':
width 32, 2 blocks, 4096 tokens, 7 condition tokens of width 32)."""
GUIDANCE = SamplerParams(steps=50, cfg_strength=3.0)
EULER_STEPS = (4, 8, 16, 25, 50)
HEUN_STEPS = (2, 3, 4, 8, 12)


def build_flow(size: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """(model, noise [1, 8, 16, 16, 16], cond [1, Lc, Cc]) of ``size`` (a key of ``SIZES``), seeded."""
    torch.manual_seed(seed)
    model = build_network(SIZES[size], "cpu").eval()
    model.set_context_cache(2)  # cond and the zero uncond: K/V once per run (exact)
    cond_shape = (1, 7, 32) if size == "tiny" else (1, 1374, 1024)
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
    parser.add_argument("--size", choices=tuple(SIZES), default="small")
    parser.add_argument("--reference", type=int, default=50, help="Heun steps of the reference solution")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, noise, cond = build_flow(args.size)
    start = time.perf_counter()
    reference = solve(model, noise, cond, "heun", args.reference)
    per_forward = (time.perf_counter() - start) / sampler_forward_passes("heun", dataclasses.replace(
        GUIDANCE, steps=args.reference))
    official = solve(model, noise, cond, "euler", 50)
    print(f"{args.size} ss-flow, {torch.get_num_threads()} threads, {per_forward:.3f} s/forward; reference Heun "
          f"{args.reference} steps (second order: its own error is about Heun 12's / {(args.reference / 12) ** 2:.0f})"
          f"; official Euler 50 vs reference: {rel(official, reference):.4f}", flush=True)
    print(f"{'sampler':8s} {'steps':>5s} {'forwards':>8s} {'vs exact':>9s} {'vs official':>11s}")
    for sampler, steps_list in (("euler", EULER_STEPS), ("heun", HEUN_STEPS)):
        for steps in steps_list:
            out = official if (sampler, steps) == ("euler", 50) else solve(model, noise, cond, sampler, steps)
            forwards = sampler_forward_passes(sampler, dataclasses.replace(GUIDANCE, steps=steps))
            print(f"{sampler:8s} {steps:5d} {forwards:8d} {rel(out, reference):9.4f} {rel(out, official):11.4f}",
                  flush=True)


if __name__ == "__main__":
    main()
