"""Seconds per image for the NiRNE (YOSO) normal pass at full network size, on this machine's CPU.

The three networks are built from the release configs (tests/fixtures/yoso_configs) with random weights
in fp32: speed does not depend on the weight values. FLOPs per stage come from torch's FlopCounterMode on
the meta device (no compute). The baseline is a plain fp32 matmul of known FLOPs timed in the same
process, so the table shows how close each stage gets to this CPU's dense-matmul rate.

    .venv/bin/python bench/bench_nirne.py [--resolution 768]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.jobs import JobContext  # noqa: E402
from backend.nirne.loading import COMPONENTS, NirneModels, build_component  # noqa: E402
from backend.nirne.pipeline import predict  # noqa: E402
from backend.nirne.zero_context import install_zero_context  # noqa: E402

CONFIGS = ROOT / "tests" / "fixtures" / "yoso_configs"
STAGES = ("vae encode", "controlnet", "unet", "vae decode")
MATMUL_N = 2048


def build_models(device: str) -> NirneModels:
    """The release-size networks on ``device`` ('meta': shapes only), random N(0, 0.02) weights on the CPU."""
    nets = {}
    for name in COMPONENTS:
        model = build_component(name, json.loads((CONFIGS / name / "config.json").read_text()))
        if device != "meta":
            model = model.to_empty(device=device)
            with torch.no_grad():
                for p in model.parameters():
                    p.normal_(0.0, 0.02)
        nets[name] = model.eval().requires_grad_(False)
        install_zero_context(nets[name])
    return NirneModels(nets["unet"], nets["vae"], nets["controlnet"], torch.device(device), torch.float32)


def timed_pass(models: NirneModels, resolution: int) -> list[float]:
    """Seconds spent in each stage of one pass, from the progress reports ``predict`` makes between stages."""
    marks: list[float] = []
    ctx = JobContext(report=lambda stage, step, total, msg: marks.append(time.perf_counter()))
    predict(models, torch.rand(1, 3, resolution, resolution) * 2 - 1, ctx)
    return [b - a for a, b in zip(marks[:-1], marks[1:])]


def matmul_rate() -> float:
    """GFLOP/s of a square fp32 matmul (best of 3)."""
    a, b = torch.randn(MATMUL_N, MATMUL_N), torch.randn(MATMUL_N, MATMUL_N)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * MATMUL_N**3 / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--resolution", type=int, default=768, help="square processing resolution")
    res = parser.parse_args().resolution
    flops = per_stage_flops(res)
    rate = matmul_rate()
    t0 = time.perf_counter()
    models = build_models("cpu")
    build = time.perf_counter() - t0
    seconds = timed_pass(models, res)
    threads = torch.get_num_threads()
    print(f"NiRNE pass at {res}x{res}, fp32, {threads} threads; random-weight build {build:.1f} s")
    print(f"baseline: fp32 matmul {MATMUL_N}^3 at {rate:.1f} GFLOP/s")
    print(f"{'stage':<12} {'seconds':>8} {'GFLOP':>9} {'GFLOP/s':>8} {'vs matmul':>9}")
    for name, sec, fl in zip(STAGES, seconds, flops):
        print(f"{name:<12} {sec:8.2f} {fl / 1e9:9.1f} {fl / 1e9 / sec:8.1f} {fl / 1e9 / sec / rate:9.2f}")
    total, total_fl = sum(seconds), sum(flops)
    print(f"{'total':<12} {total:8.2f} {total_fl / 1e9:9.1f} {total_fl / 1e9 / total:8.1f} "
          f"{total_fl / 1e9 / total / rate:9.2f}")
    print(f"seconds per image: {total:.1f} (a matmul-bound ideal would take {total_fl / 1e9 / rate:.1f})")


def per_stage_flops(resolution: int) -> list[float]:
    """FLOPs of each stage: the counter is read at every progress report of one meta-device pass."""
    from torch.utils.flop_counter import FlopCounterMode

    models = build_models("meta")
    totals: list[float] = []
    with FlopCounterMode(display=False) as counter:
        ctx = JobContext(report=lambda *a: totals.append(float(counter.get_total_flops())))
        predict(models, torch.empty(1, 3, resolution, resolution, device="meta"), ctx)
    return [b - a for a, b in zip(totals[:-1], totals[1:])]


if __name__ == "__main__":
    main()
