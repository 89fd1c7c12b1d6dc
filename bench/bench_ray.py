"""Batch throughput, local vs Ray on the same machine: images per minute and the farm's overhead.

Relief jobs of about one second each (``--size`` px images at ``--resolution``). Four timings, all in this
process on the same images, each writing a fresh output folder:

- local: ``run_batch`` (the baseline, one process);
- ray 1 worker, warm: ``run_batch_ray`` on one already started worker (engines loaded), so the difference
  to local is the farm's own per-image cost (shipping the result back, scheduling, the done-records). Wall
  time hides it (the driver writes one result while the worker makes the next), so the CPU time of this
  process and all its descendants (Ray's own processes included) is compared too; the goal is < 10 %;
- ray, all CPU slots, warm: the throughput a farm of this machine's cores gives;
- ray cold: a fresh local Ray and its workers for one batch, start-up included (what ``--ray auto`` costs).

Run: ``.venv/bin/python bench/bench_ray.py [--count 16] [--size 256] [--resolution 256]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.batch import BatchJob, run_batch  # noqa: E402
from backend.farm import FarmConfig, init_local  # noqa: E402
from backend.farm_batch import batch_farm, run_batch_ray  # noqa: E402
from backend.settings import BackendSettings  # noqa: E402


def make_images(folder: Path, count: int, size: int) -> list[Path]:
    import numpy as np
    from PIL import Image

    paths = []
    for i in range(count):  # two discs, moved a little per image
        yy, xx = np.mgrid[:size, :size] / size
        shift = 0.01 * (i % 7)
        body = (xx - 0.5 - shift) ** 2 + (yy - 0.55) ** 2 < 0.35 ** 2
        mask = body | ((xx - 0.3) ** 2 + (yy - 0.25) ** 2 < 0.15 ** 2)
        rgba = np.zeros((size, size, 4), np.uint8)
        rgba[..., :3] = (np.stack([xx, yy, 1 - xx], -1) * 255).astype(np.uint8)
        rgba[..., 3] = mask * 255
        paths.append(folder / f"img{i:03d}.png")
        Image.fromarray(rgba).save(paths[-1])
    return paths


def timed(fn) -> float:  # noqa: ANN001
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def cpu_seconds() -> float:
    """CPU time of this process and every live descendant (Ray's own processes and its workers)."""
    import psutil

    total = time.process_time()
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:  # ended meanwhile
            continue
        total += times.user + times.system
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--resolution", type=int, default=256)
    args = parser.parse_args()
    settings = BackendSettings(device="cpu")
    quiet = FarmConfig(progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        images = make_images(root, args.count, args.size)

        def job(name: str) -> BatchJob:
            return BatchJob(images=images, output=root / name, params={"resolution": args.resolution})

        run_batch(job("warm-up"), settings, False)  # imports and first-call costs out of the baseline
        c0 = cpu_seconds()
        local = timed(lambda: run_batch(job("local"), settings, False))
        local_cpu = cpu_seconds() - c0
        cold = timed(lambda: run_batch_ray(job("cold"), settings, quiet))  # starts and stops its own Ray
        init_local()
        warm: dict[int, float] = {}
        warm_cpu: dict[int, float] = {}
        for workers in (1, 0):
            farm = batch_farm(settings, FarmConfig(workers=workers, progress=False))
            run_batch_ray(job(f"warm-up-{workers}"), settings, quiet, pool=farm)  # workers started, engines loaded
            t0, c0 = time.perf_counter(), cpu_seconds()
            run_batch_ray(job(f"ray-{workers}"), settings, quiet, pool=farm)
            warm[workers] = time.perf_counter() - t0
            warm_cpu[workers] = cpu_seconds() - c0
            slots = farm.size
            farm.close()
    n = args.count
    print(f"{n} relief images, {args.size} px, resolution {args.resolution}: {local / n:.2f} s each locally")
    print(f"{'run':28} {'seconds':>8} {'images/min':>10} {'vs local':>9}")
    for name, seconds in (("local (baseline)", local), ("ray, 1 worker, warm", warm[1]),
                          (f"ray, {slots} workers, warm", warm[0]), ("ray cold (start-up included)", cold)):
        print(f"{name:28} {seconds:8.1f} {60 * n / seconds:10.1f} {seconds / local:8.2f}x")
    print(f"farm overhead per image, 1 worker vs local: wall {100 * (warm[1] / local - 1):+.1f} % "
          f"(the driver writes while the worker computes); CPU {100 * (warm_cpu[1] / local_cpu - 1):+.1f} % "
          f"({warm_cpu[1] / n:.2f} vs {local_cpu / n:.2f} s an image, all Ray processes counted); goal < 10 %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
