"""The hi3dgen engine's stages after the flows, on a mesh the size the decoder gives: where the time goes.

The flows and the decoder are timed by ``bench_presets.py``; this times what follows them on one mesh from
marching cubes at ``--res`` (256 as the release): cleanup, the camera alignment, the refinement and the
texture bake, each as the engine calls it, with the engine's default options. The mesh is a bumpy sphere
whose surface carries ``--noise`` (0: a smooth object of a few hundred thousand faces; 1: the ragged
surface random weights decode to, about 0.76 M faces at 256). The view is rendered from the mesh itself at
``--image`` pixels, so the alignment and refinement have a real answer to find.

    .venv/bin/python bench/bench_post_stages.py [--noise 1.0] [--res 256] [--image 1024] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.engines.base import MeshData  # noqa: E402
from backend.jobs import JobContext  # noqa: E402
from backend.mesh.cleanup import CleanupOptions, clean_mesh  # noqa: E402
from backend.render.shade import render_normal_map  # noqa: E402
from tests.backend.shapes import random_view  # noqa: E402


def field_mesh(res: int, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes of a bumpy sphere's distance at ``res``^3, plus ``noise`` voxels of smoothed random
    ripple (vertices in [-0.5, 0.5]^3, the decoder's frame)."""
    from scipy.ndimage import gaussian_filter
    from skimage.measure import marching_cubes

    axis = (np.arange(res, dtype=np.float32) + 0.5) / res - 0.5
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    r = np.sqrt(x * x + y * y + z * z) + 1e-6
    bumps = 0.02 * np.sin(9 * math.pi * x) * np.sin(7 * math.pi * y) * np.sin(8 * math.pi * z)
    sdf = (r - 0.36 + bumps) * res  # in voxels
    if noise > 0:
        ripple = gaussian_filter(np.random.default_rng(seed).normal(size=sdf.shape).astype(np.float32), 0.7)
        sdf = sdf + noise * ripple / ripple.std() * 1.5
    verts, faces, _, _ = marching_cubes(sdf, 0.0)
    return (verts / res - 0.5).astype(np.float32), faces[:, ::-1].astype(np.int32)


def timed(rows: dict[str, float], name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    rows[name] = time.perf_counter() - t0
    print(f"  {name:<10} {rows[name]:8.1f} s", flush=True)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from backend.align.align import align_view
    from backend.bake.result import texture_mesh
    from backend.camera import Camera
    from backend.refine.refine import Confidence, refine_mesh

    rows: dict[str, float] = {}
    vertices, faces = timed(rows, "mesh", field_mesh, args.res, args.noise)
    print(f"  {len(faces):,} faces from marching cubes at {args.res}^3 (noise {args.noise})", flush=True)
    camera = random_view(np.random.default_rng(3), args.image, 40.0)
    mask, normals, _ = render_normal_map(vertices, faces, camera)
    rgba = np.concatenate([((normals + 1) * 127.5).astype(np.uint8),
                           (mask[..., None] * 255).astype(np.uint8)], -1)
    ctx = JobContext()
    v, f, vn = timed(rows, "cleanup", clean_mesh, vertices, faces, CleanupOptions())
    mesh = MeshData("bench", v, f, normals=vn)
    found = timed(rows, "align", align_view, v, f, mask, normals, ctx=ctx).to_dict()
    confident, reason = Confidence().check(found.get("alignment", {}))
    if confident:
        result = timed(rows, "refine", refine_mesh, v, f, Camera.from_dict(found), mask, normals, ctx=ctx)
        print(f"  refine: {json.dumps({k: result.stats[k] for k in list(result.stats)[:6]})}", flush=True)
    else:
        print(f"  refine skipped: {reason}", flush=True)
    _, texture = timed(rows, "texture", texture_mesh, mesh, rgba, normals, mask, found, ctx)
    post = sum(t for k, t in rows.items() if k != "mesh")
    print(f"  post-stages {post:.1f} s on {len(f):,} faces; texture: "
          f"{json.dumps({k: texture[k] for k in list(texture)[:8]})}", flush=True)
    return {"faces": int(len(f)), "seconds": rows, "post_seconds": post}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--noise", type=float, default=1.0)
    parser.add_argument("--res", type=int, default=256)
    parser.add_argument("--image", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run(args)


if __name__ == "__main__":
    main()
