"""Seconds per sampler step of both flow stages at their real sizes (random weights, fp32, CPU).

A step of the release's Euler sampler is one model forward, or two inside the guidance interval
(cond + uncond). Each stage is timed for one unguided step (the baseline, measured in the same process) and
one guided step, with the two passes batched (``batch_cfg=True``, the default) and run separately as the
release does; the ratios say what batching saves. The last column estimates a whole stage at the official
app's defaults (structure: 50 steps, 38 guided; latent: 6 steps, 5 guided).

Run: ``.venv/bin/python bench/bench_sampler.py`` (``--voxels-radius``/``--voxels-thickness`` pick the SLat
shell; the default, about 20k voxels, is the TRELLIS paper's average structure).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_flow_forward import shell_coords  # noqa: E402

from backend.models.configs import VARIANTS  # noqa: E402
from backend.models.loading import build_network  # noqa: E402
from backend.pipelines.hi3dgen import SparseFlow  # noqa: E402
from backend.sampling import LATENT_DEFAULTS, STRUCTURE_DEFAULTS, SamplerParams, forward_passes  # noqa: E402

ModelFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def one_step(model: ModelFn, noise: torch.Tensor, cond: torch.Tensor, guided: bool, batch_cfg: bool) -> float:
    """Seconds of one sampler step at t = 1 (inside the guidance interval when ``guided``)."""
    from backend.sampling import sample_flow_euler

    start = time.perf_counter()
    with torch.inference_mode():
        sample_flow_euler(model, noise, cond, torch.zeros_like(cond), steps=1,
                          cfg_strength=3.0 if guided else 0.0, batch_cfg=batch_cfg)
    return time.perf_counter() - start


def stage_row(name: str, model: ModelFn, noise: torch.Tensor, cond: torch.Tensor,
              defaults: SamplerParams) -> tuple[str, float, float, float, float]:
    one_step(model, noise, cond, guided=False, batch_cfg=True)  # warm-up: kernel maps, allocator
    plain = one_step(model, noise, cond, guided=False, batch_cfg=True)
    batched = one_step(model, noise, cond, guided=True, batch_cfg=True)
    separate = one_step(model, noise, cond, guided=True, batch_cfg=False)
    guided_steps = forward_passes(defaults) - defaults.steps
    stage = guided_steps * batched + (defaults.steps - guided_steps) * plain
    return name, plain, batched, separate, stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voxels-radius", type=float, default=27.0)
    parser.add_argument("--voxels-thickness", type=float, default=2.2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cond = torch.randn(1, 1374, 1024)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, fp32, random weights")
    rows = []
    ss = build_network(VARIANTS["ss_flow_normal_dit_L_16l8_fp16"], "cpu").eval()
    rows.append(stage_row("structure (16^3 x 8, 4096 tokens)", ss, torch.randn(1, 8, 16, 16, 16), cond,
                          STRUCTURE_DEFAULTS))
    del ss
    coords = shell_coords(args.voxels_radius, args.voxels_thickness)
    slat = build_network(VARIANTS["slat_flow_normal_dit_L_64l8p2_fp16"], "cpu").eval()
    rows.append(stage_row(f"latent ({len(coords)} voxels)", SparseFlow(slat, coords),
                          torch.randn(len(coords), 8), cond, LATENT_DEFAULTS))
    print(f"{'stage':34s} {'unguided s':>10s} {'guided s':>9s} {'vs 2x':>6s} {'separate s':>10s} "
          f"{'batched/separate':>16s} {'stage at defaults s':>19s}")
    for name, plain, batched, separate, stage in rows:
        print(f"{name:34s} {plain:10.1f} {batched:9.1f} {batched / (2 * plain):6.2f} {separate:10.1f} "
              f"{batched / separate:16.2f} {stage:19.0f}")


if __name__ == "__main__":
    main()
