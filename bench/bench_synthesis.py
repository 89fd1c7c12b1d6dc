"""Synthesis throughput: assets per minute per core, by stage (generate, filter, labels, views, rgb, dataset).

Runs the tiny config's pipeline (or ``--config``) in this process with one worker, on ``--count`` assets per
generator, and times each stage from the run's own report. CPU time is measured too (this process and its
Blender subprocesses), since a shared machine's wall time includes other people's work. The baseline,
measured in the same process first, is marching cubes of an analytic sphere at the generators' resolution:
each stage's CPU per asset is also printed as a multiple of its CPU time, which stays comparable between
machines.

Views are rasterised by the backend's one rasterizer (torch; its threads count in the CPU time) and RGB is
rendered by Blender (Cycles, CPU) in a subprocess per asset, as the config says (tiny.toml: on).

Run: ``.venv/bin/python bench/bench_synthesis.py [--count 4] [--rgb | --no-rgb] [--config synthesis/configs/tiny.toml]``
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthesis import sdf  # noqa: E402
from synthesis.config import load_config  # noqa: E402
from synthesis.pipeline import run  # noqa: E402


def baseline_seconds(resolution: int, repeats: int = 3) -> float:
    """Best CPU seconds of ``repeats`` meshings of a sphere's distance field at ``resolution``^3."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        sdf.mesh_field(sdf.sphere((0, 0, 0), 0.4), resolution)
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "synthesis/configs/tiny.toml"))
    parser.add_argument("--count", type=int, default=4, help="assets per generator")
    rgb = parser.add_mutually_exclusive_group()
    rgb.add_argument("--rgb", action="store_true", default=None, help="Blender RGB renders on (needs .venv-blender)")
    rgb.add_argument("--no-rgb", dest="rgb", action="store_false", help="Blender RGB renders off")
    args = parser.parse_args()
    config = load_config(args.config)
    gens = tuple(dataclasses.replace(g, count=args.count) for g in config.generators if g.kind != "image_to_3d")
    config = dataclasses.replace(config, generators=gens, workers=1)
    if args.rgb is not None:
        config = dataclasses.replace(config, render=dataclasses.replace(config.render, rgb=args.rgb))
    resolution = max(g.resolution for g in gens)
    base = baseline_seconds(resolution)
    with tempfile.TemporaryDirectory() as folder:
        summary = run(config, Path(folder) / "out", progress=False)
    assets = sum(g.count for g in gens)
    print(f"{assets} assets ({', '.join(f'{g.kind} x{g.count} @ {g.resolution}^3' for g in gens)}), 1 worker, "
          f"{config.views.count} views of {config.views.resolution}^2{' + RGB' if config.render.rgb else ''}; "
          f"baseline: sphere meshing at {resolution}^3 = {base * 1000:.0f} ms CPU")
    kept = sum(v["count"] for v in summary.manifest["splits"].values())
    print(f"{'stage':>9} {'assets':>6} {'wall s':>7} {'CPU s':>6} {'assets/min/core':>16} {'CPU x baseline':>15}")
    for report in summary.reports:
        handled = kept if report.stage == "dataset" else report.total  # the dataset stage's tasks are shards
        cpu = summary.cpu_seconds[report.stage]
        rate = 60.0 * handled / cpu if cpu > 0 else float("inf")
        print(f"{report.stage:>9} {handled:>6} {summary.seconds[report.stage]:>7.2f} {cpu:>6.2f} {rate:>16.1f} "
              f"{cpu / max(handled, 1) / base:>15.1f}")
    wall, cpu = sum(summary.seconds.values()), sum(summary.cpu_seconds.values())
    print(f"{'all':>9} {assets:>6} {wall:>7.2f} {cpu:>6.2f} {60.0 * assets / cpu:>16.1f}")
    print("assets/min/core from CPU time (one worker = one core; wall time on a shared machine includes others).")
    print(f"kept {kept} of {assets}; rejected by: {summary.manifest['filters']['rejected'] or 'none'}")


if __name__ == "__main__":
    main()
