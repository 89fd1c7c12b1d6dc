"""Reconstruction-level refinement on shapes with known answers: how much closer the view and the surface get.

Per case, a detailed mesh is rendered (mask + camera-space normals) from ``--views`` random known views
(alternately orthographic and 40-degree perspective); a degraded copy (Laplacian-smoothed; decimated to
a quarter of its faces; or that split once more into flat quarters) is refined against each view with
the default ``RefineConfig``. Printed, as medians over the views: the mean angular error of the view's
normals, the silhouette IoU, and the symmetric Chamfer distance to the detailed mesh (whole surface,
seen and unseen), before -> after.

    .venv/bin/python bench/bench_refine.py [--views 4] [--size 256] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.mesh.cleanup import decimate  # noqa: E402
from backend.refine.refine import RefineConfig, refine_mesh  # noqa: E402
from backend.render.shade import render_normal_map  # noqa: E402
from tests.backend.shapes import bumpy_sphere, bust, chamfer, random_view, smoothed  # noqa: E402

Mesh = tuple[np.ndarray, np.ndarray]


def smooth_start(mesh: Mesh) -> Mesh:
    return smoothed(*mesh, iterations=15), mesh[1]


def decimated_start(mesh: Mesh) -> Mesh:
    v, f = decimate(mesh[0], mesh[1].astype(np.int32), len(mesh[1]) // 4)
    return v, f.astype(np.int64)


def subdivided_start(mesh: Mesh) -> Mesh:
    """Decimated, then split once (each triangle into four, flat): the vertices to carry the detail again."""
    import trimesh

    v, f = decimated_start(mesh)
    v, f = trimesh.remesh.subdivide(v, f)
    return np.asarray(v, np.float32), np.asarray(f, np.int64)


CASES: dict[str, tuple[Callable[[], Mesh], Callable[[Mesh], Mesh]]] = {
    "bumpy sphere, smoothed": (lambda: bumpy_sphere(4), smooth_start),
    "bumpy sphere, decimated": (lambda: bumpy_sphere(4), decimated_start),
    "bumpy sphere, dec.+split": (lambda: bumpy_sphere(4), subdivided_start),
    "bust, smoothed": (bust, smooth_start),
}


def run_case(name: str, views: int, size: int, device: str) -> None:
    build, degrade = CASES[name]
    detailed = build()
    start = degrade(detailed)
    rng = np.random.default_rng(7)
    rows: dict[str, list[float]] = {k: [] for k in ("a0", "a1", "i0", "i1", "c0", "c1", "s")}
    config = RefineConfig(size=size)
    base = chamfer(start, detailed)
    for i in range(views):
        camera = random_view(rng, 160, 0.0 if i % 2 == 0 else 40.0)
        mask, normals, _ = render_normal_map(*detailed, camera)
        t0 = time.perf_counter()
        result = refine_mesh(start[0], start[1], camera, mask, normals, config, device=device)
        rows["s"].append(time.perf_counter() - t0)
        st = result.stats
        rows["a0"].append(st["angle_deg_before"])
        rows["a1"].append(st["angle_deg_after"])
        rows["i0"].append(st["iou_before"])
        rows["i1"].append(st["iou_after"])
        rows["c0"].append(base)
        rows["c1"].append(chamfer((result.vertices, start[1]), detailed))
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"  {name:24s} ({len(start[1]):5d} faces): angle {med['a0']:.2f} -> {med['a1']:.2f} deg "
          f"({med['a1'] / med['a0'] - 1:+.0%}); IoU {med['i0']:.3f} -> {med['i1']:.3f}; Chamfer "
          f"{med['c0'] * 1e3:.2f} -> {med['c1'] * 1e3:.2f} e-3 ({med['c1'] / med['c0'] - 1:+.0%}; worst view "
          f"{max(rows['c1']) / med['c0'] - 1:+.0%}); {med['s']:.1f} s per refinement")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy machine)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--case", choices=sorted(CASES), action="append", help="only these cases")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"refinement: {args.views} random views per case, {args.size} px window, "
          f"{RefineConfig().iterations} iterations, torch threads {torch.get_num_threads()}")
    for name in args.case or CASES:
        run_case(name, args.views, args.size, args.device)


if __name__ == "__main__":
    main()
