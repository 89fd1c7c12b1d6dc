"""Rasterizer speed and view-alignment accuracy on shapes with known answers.

Rasterizer: a ~80k-face mesh at 512 px (seconds, faces/s), against a per-triangle Python loop (the naive
baseline) on a small mesh in the same process. Alignment: per shape, ``--views`` random views (alternately
orthographic and 40-degree perspective), the mesh turned into a random frame, projection 'auto'; prints
median / max rotation error, min IoU and seconds per alignment.

    .venv/bin/python bench/bench_align.py [--views 20] [--size 128] [--threads 1] [--device cpu] [--shape bust]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.align.align import AlignConfig, align_view  # noqa: E402
from backend.camera import Camera, look_at, make_camera, rotation_angle  # noqa: E402
from backend.render.raster import rasterize_cameras  # noqa: E402
from backend.render.shade import render_normal_map  # noqa: E402
from tests.backend.shapes import SHAPES, random_rotation, random_view, suzanne  # noqa: E402


def naive_raster(vertices: np.ndarray, faces: np.ndarray, camera: Camera) -> np.ndarray:
    """The baseline: one triangle at a time, numpy over its bounding box; returns face ids [H, W]."""
    screen = camera.project(vertices)
    depth = np.full((camera.height, camera.width), np.inf)
    ids = np.full((camera.height, camera.width), -1)
    for i, (a, b, c) in enumerate(screen[faces]):
        lo, hi = np.floor(np.minimum(np.minimum(a, b), c)[:2]), np.ceil(np.maximum(np.maximum(a, b), c)[:2])
        c0, r0 = max(int(lo[0]), 0), max(int(lo[1]), 0)
        c1, r1 = min(int(hi[0]), camera.width), min(int(hi[1]), camera.height)
        if c1 <= c0 or r1 <= r0:
            continue
        x, y = np.meshgrid(np.arange(c0, c1) + 0.5, np.arange(r0, r1) + 0.5)
        area = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
        if abs(area) < 1e-12:
            continue
        w0 = ((b[0] - x) * (c[1] - y) - (b[1] - y) * (c[0] - x)) / area
        w1 = ((c[0] - x) * (a[1] - y) - (c[1] - y) * (a[0] - x)) / area
        w2 = 1 - w0 - w1
        z = w0 * a[2] + w1 * b[2] + w2 * c[2]
        win = (w0 >= 0) & (w1 >= 0) & (w2 >= 0) & (z < depth[r0:r1, c0:c1])
        depth[r0:r1, c0:c1][win] = z[win]
        ids[r0:r1, c0:c1][win] = i
    return ids


def big_mesh() -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=6)  # 81,920 faces
    v = sphere.vertices * (0.4 + 0.05 * np.sin(7 * sphere.vertices[:, :1]) * np.cos(5 * sphere.vertices[:, 2:]))
    return v.astype(np.float32), sphere.faces.astype(np.int64)


def bench_raster(device: str) -> None:
    cam = make_camera(*look_at([1.2, -2.6, 0.8], [0, 0, 0]), 512, 512, fov=np.radians(35))
    v, f = big_mesh()
    vt, ft = torch.tensor(v, device=device), torch.tensor(f, device=device)
    rasterize_cameras(vt, ft, [cam])  # warm-up
    runs = 5
    t0 = time.perf_counter()
    for _ in range(runs):
        rasterize_cameras(vt, ft, [cam])
    if device != "cpu":
        torch.cuda.synchronize()
    ours = (time.perf_counter() - t0) / runs
    small_v, small_f = suzanne()
    small_cam = make_camera(cam.rotation, cam.translation, 128, 128, fov=cam.fov)
    t0 = time.perf_counter()
    naive_ids = naive_raster(small_v, small_f, small_cam)
    naive = time.perf_counter() - t0
    ids = rasterize_cameras(torch.tensor(small_v), torch.tensor(small_f), [small_cam]).face_id[0].numpy()
    agree = float(((ids >= 0) == (naive_ids >= 0)).mean())
    print(f"raster: {len(f)} faces at 512 px: {ours:.3f} s ({len(f) / ours / 1e6:.2f} M faces/s); naive loop: "
          f"{len(small_f) / naive / 1e3:.1f} k faces/s on {len(small_f)} faces at 128 px "
          f"(ratio {len(f) / ours / (len(small_f) / naive):.0f}x; masks agree on {agree:.2%} of pixels)")


def bench_align(views: int, size: int, device: str, shapes: list[str] | None = None) -> None:
    print(f"alignment: {views} random views per shape, {size} px, projection auto, torch threads "
          f"{torch.get_num_threads()}")
    for name in shapes or SHAPES:
        vertices, faces = SHAPES[name]()
        rng = np.random.default_rng(2024)
        errors, ious, walls, cpus, wrong_projection = [], [], [], [], 0
        for i in range(views):
            fov = 0.0 if i % 2 == 0 else 40.0
            truth = random_view(rng, size, fov)
            mask, normals, _ = render_normal_map(vertices, faces, truth)
            turn = random_rotation(rng)
            moved = (vertices @ turn.T).astype(np.float32)
            wall, cpu = time.perf_counter(), time.process_time()
            result = align_view(moved, faces, mask, normals, AlignConfig(), device=device)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
            got = render_normal_map(moved, faces, result.camera)[0]
            ious.append(float((got & mask).sum() / (got | mask).sum()))
            errors.append(rotation_angle(truth.rotation @ turn.T, result.camera.rotation))
            wrong_projection += (result.camera.fov == 0) != (fov == 0)
        print(f"  {name:8s} ({len(faces):5d} faces): rotation error median {statistics.median(errors):.2f} deg, "
              f"max {max(errors):.2f} deg; IoU min {min(ious):.3f}; within 5 deg and IoU 0.95: "
              f"{sum(e <= 5 and u >= 0.95 for e, u in zip(errors, ious))}/{views}; projection type wrong "
              f"{wrong_projection}/{views}; {statistics.mean(walls):.2f} s wall, {statistics.mean(cpus):.2f} s CPU "
              f"per alignment")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=20)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy machine)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-raster", action="store_true")
    parser.add_argument("--shape", choices=sorted(SHAPES), action="append", help="only these shapes")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.skip_raster:
        bench_raster(args.device)
    bench_align(args.views, args.size, args.device, args.shape)


if __name__ == "__main__":
    main()
