"""UV unwrap and texture baking of full-3D meshes (backend/bake): accuracy from the input view, and timings.

Accuracy: per test shape (bust, Suzanne, chair), a colour field and bumped normals rendered from a
perspective view with the project's rasterizer are baked, and the baked, textured mesh is rendered again
from that view: PSNR of the colours and mean angle of the shading normals on the visible foreground.
Timings: lumpy spheres of about 80k and 330k faces (the sizes hi3dgen gives), per step of the bake (unwrap,
texel map, visibility, colour, normals) at the default atlas, and the unwrap against xatlas's default
options in the same process (the baseline).

    .venv/bin/python bench/bench_bake.py [--size 512] [--subdivisions 6 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.bake.bake import BakeOptions, bake_mesh  # noqa: E402
from backend.bake.preview import psnr, render_normal_mapped, render_textured  # noqa: E402
from tests.backend.bake_scene import picture, view  # noqa: E402
from tests.backend.shapes import SHAPES  # noqa: E402


def lumpy_sphere(subdivisions: int) -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=subdivisions)
    p = sphere.vertices
    radius = 0.4 + 0.04 * np.sin(7 * p[:, :1]) * np.cos(5 * p[:, 2:]) + 0.02 * np.sin(23 * p[:, 1:2])
    return (p * radius).astype(np.float32), sphere.faces.astype(np.int64)


def accuracy(size: int) -> None:
    print(f"accuracy from the input view ({size} px, 35-degree perspective, atlas 1024):")
    for name, make in SHAPES.items():
        vertices, faces = make()
        camera = view(size)
        rgb, normals, mask = picture(vertices, faces, camera)
        baked = bake_mesh(vertices, faces, None, camera, rgb, normals, mask, BakeOptions(size=1024))
        colors, drawn = render_textured(baked.vertices, baked.faces, baked.uvs,
                                        baked.images.base_color[..., :3] / 255.0, camera)
        shading, _ = render_normal_mapped(baked.vertices, baked.faces, baked.normals, baked.uvs,
                                          baked.images.normals, camera)
        both = mask & drawn
        angle = np.degrees(np.arccos(np.clip((shading[both] * normals[both]).sum(-1), -1.0, 1.0)))
        print(f"  {name:8s} {len(faces):6d} faces: colour PSNR {psnr(colors[both], rgb[both]):5.1f} dB, "
              f"normals {angle.mean():.2f} deg mean / {np.percentile(angle, 95):.2f} p95, "
              f"seen texels {baked.stats['seen_fraction']:.2f}")


def timings(subdivisions: list[int], size: int) -> None:
    import xatlas

    from backend.bake.unwrap import unwrap

    print("timings (seconds):")
    for level in subdivisions:
        vertices, faces = lumpy_sphere(level)
        camera = view(size)
        rgb, normals, mask = picture(vertices, faces, camera)
        t0 = time.perf_counter()
        baked = bake_mesh(vertices, faces, None, camera, rgb, normals, mask)
        total = time.perf_counter() - t0
        steps = ", ".join(f"{k} {v:.1f}" for k, v in baked.stats["seconds"].items())
        print(f"  {len(faces):7d} faces, atlas {baked.stats['atlas']}: total {total:.1f} ({steps}); "
              f"{baked.stats['charts']} charts, utilization {baked.stats['utilization']:.2f}")
        t0 = time.perf_counter()
        atlas = xatlas.Atlas()
        atlas.add_mesh(vertices, faces.astype(np.uint32))
        atlas.generate()
        default = time.perf_counter() - t0
        ours = unwrap(vertices, faces, options=BakeOptions().unwrap).seconds
        print(f"    unwrap: ours {ours:.1f} s vs xatlas defaults {default:.1f} s (ratio {ours / default:.2f}); "
              f"defaults: {atlas.chart_count} charts, utilization {atlas.utilization:.2f}, "
              f"{atlas.width}x{atlas.height}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="input picture side in pixels")
    parser.add_argument("--subdivisions", type=int, nargs="*", default=[6, 7],
                        help="icosphere levels of the timing meshes (6: 82k faces, 7: 328k)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    accuracy(args.size)
    timings(args.subdivisions, args.size)


if __name__ == "__main__":
    main()
