"""Surface extraction: time and peak memory against the number of occupied cubes, both modes.

Input: sphere shells laid out as the mesh decoder's output (a band of occupied cubes around the surface, as the
real decoder gives: each 64^3 voxel becomes 4^3 cubes at 256^3), at resolutions 64, 128, 256. Baseline in the
same process: marching cubes on the release's full (res+1)^3 grid. Peak memory is the kernel's resident-set
high-water mark during the call (reset before it) above the resident set before it (Linux only).

Run: .venv/bin/python bench/bench_extraction.py
"""

from __future__ import annotations

import gc
import sys
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


def rss_kib(field: str = "VmRSS") -> int:
    """A memory figure of this process from /proc/self/status, in KiB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def measure(fn: Callable[[], tuple[np.ndarray, np.ndarray]]) -> tuple[float, float, int]:
    """(seconds, peak MiB above the resident set before the call, faces).

    The kernel's high-water mark (VmHWM) is reset first (``5`` written to /proc/self/clear_refs), so the
    peak is this call's own, with no sampling gaps.
    """
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = rss_kib()
    t0 = time.perf_counter()
    _, faces = fn()
    seconds = time.perf_counter() - t0
    return seconds, max(rss_kib("VmHWM") - base, 0) / 1024, len(faces)


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
