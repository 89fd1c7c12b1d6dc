"""Surface extraction: time and peak memory against the number of occupied cubes, both modes.

Input: sphere shells laid out as the mesh decoder's output (a band of occupied cubes around the surface, as the
real decoder gives: each 64^3 voxel becomes 4^3 cubes at 256^3), at resolutions 64, 128, 256. Baseline in the
same process: marching cubes on the release's full (res+1)^3 grid. Peak memory is the process's resident-set
high-water mark above the level before the call, sampled every 2 ms by a thread.

Run: .venv/bin/python bench/bench_extraction.py
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.mesh.decoder_layout import CORNERS  # noqa: E402
from backend.mesh.flexicubes import extract_flexicubes  # noqa: E402
from backend.mesh.marching_cubes import extract_marching_cubes  # noqa: E402

RADIUS = 0.35
CASES = [(64, 2.0), (128, 2.0), (256, 2.0), (256, 6.0)]  # (resolution, half band width in cubes)


def shell(res: int, half_band: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Cubes whose centre lies within ``half_band`` cubes of the sphere, with their 101 decoder channels."""
    axis = (np.arange(res) + 0.5) / res - 0.5
    parts = []
    for x in range(res):  # slice by slice: no res^3 float arrays
        yz = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1)  # [R, R, 2]
        d = np.sqrt(axis[x] ** 2 + (yz**2).sum(-1)) - RADIUS
        iy, iz = np.nonzero(np.abs(d) < half_band / res)
        parts.append(np.stack([np.full_like(iy, x), iy, iz], 1))
    cubes = np.concatenate(parts)  # [M, 3]
    corners = (cubes[:, None, :] + CORNERS.numpy()[None]) / res - 0.5  # [M, 8, 3]
    feats = np.zeros((len(cubes), 101), np.float32)
    feats[:, :8] = np.linalg.norm(corners, axis=-1) - RADIUS + 1.0 / res  # before the release's bias
    return torch.from_numpy(cubes), torch.from_numpy(feats)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(fn: Callable[[], tuple[np.ndarray, np.ndarray]]) -> tuple[float, float, int]:
    """(seconds, peak MiB above the starting RSS, faces)."""
    gc.collect()
    base, peak, done = rss_bytes(), [0], threading.Event()

    def poll() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.002)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    _, faces = fn()
    seconds = time.perf_counter() - t0
    done.set()
    thread.join()
    return seconds, max(peak[0] - base, 0) / 2**20, len(faces)


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    print(f"{'res':>4} {'band':>4} {'cubes':>9} {'mode':<16} {'faces':>9} {'s':>7} {'peak MiB':>9} {'s vs full':>9}")
    for res, band in CASES:
        cubes, feats = shell(res, band)
        runs = {
            "mc full grid": lambda c=cubes, f=feats, r=res: extract_marching_cubes(c, f, r, full_grid=True),
            "mc bbox": lambda c=cubes, f=feats, r=res: extract_marching_cubes(c, f, r),
            "flexicubes": lambda c=cubes, f=feats, r=res: extract_flexicubes(c, f, r),
        }
        base_s = None
        for name, fn in runs.items():
            s, mib, faces = measure(fn)
            base_s = base_s or s
            row = f"{res:>4} {band:>4.0f} {len(cubes):>9} {name:<16} {faces:>9}"
            print(f"{row} {s:>7.2f} {mib:>9.0f} {s / base_s:>9.2f}")
    dense = 257**3 * (10 * 4 + 3 * 4 + 3 * 8) + 256**3 * 8 * 8  # attrs, deformed grid, reg_v, reg_c
    print(f"(the release's dense tensors alone at 256: about {dense / 2**30:.1f} GiB, before skimage's own arrays)")


if __name__ == "__main__":
    main()
