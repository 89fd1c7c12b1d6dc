"""Render relief meshes (.npz from scripts/relief_mesh_npz.py) side by side, three-quarter view.

Each mesh is built as the add-on builds it (smooth, edges over 30 degrees sharp: its default Auto Smooth)
without a material, so the picture shows the geometry alone; Cycles on the CPU, headless. Run with the bpy
environment:
    .venv-blender/bin/python scripts/render_before_after.py before.npz after.npz \\
        noisy_before.npz noisy_after.npz --columns 2 --out docs/images/relief_before_after.png
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
AUTO_SMOOTH_DEGREES = 30.0  # as blender_addon/settings.py


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("meshes", nargs="+", help=".npz files, left to right")
    parser.add_argument("--out", required=True)
    parser.add_argument("--size", type=int, default=480, help="pixels per view (square)")
    parser.add_argument("--columns", type=int, default=0, help="views per row (default: all in one row)")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--azimuth", type=float, default=-40.0)
    parser.add_argument("--elevation", type=float, default=20.0)
    args = parser.parse_args()

    import bpy

    sys.path.insert(0, str(REPO / "scripts"))
    from render_preview import render_preview

    views = []
    with tempfile.TemporaryDirectory(prefix="hi3dgen-before-after-") as tmp:
        for k, path in enumerate(args.meshes):
            bpy.ops.wm.read_factory_settings(use_empty=True)
            obj = add_mesh(bpy, np.load(path))
            png = render_preview(obj, Path(tmp) / f"view{k}.png", size=args.size, samples=args.samples,
                                 azimuth_deg=args.azimuth, elevation_deg=args.elevation, denoise=True)
            views.append(read_png(bpy, png))
        write_png(bpy, tiled(views, args.columns or len(views)), Path(args.out))
    print(f"wrote {args.out}")
    return 0


def add_mesh(bpy, data) -> object:  # noqa: ANN001 - bpy is the module
    vertices, faces = data["vertices"].astype(np.float32), data["faces"].astype(np.int32)
    mesh = bpy.data.meshes.new("relief")
    mesh.vertices.add(len(vertices))
    mesh.vertices.foreach_set("co", vertices.ravel())
    mesh.loops.add(faces.size)
    mesh.loops.foreach_set("vertex_index", faces.ravel())
    mesh.polygons.add(len(faces))
    mesh.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
    mesh.update(calc_edges=True)
    mesh.polygons.foreach_set("use_smooth", np.ones(len(faces), dtype=bool))
    mesh.set_sharp_from_angle(angle=math.radians(AUTO_SMOOTH_DEGREES))
    obj = bpy.data.objects.new("relief", mesh)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def tiled(views: list[np.ndarray], columns: int, margin: int = 12) -> np.ndarray:
    """Views [h, w, 4] cropped to what all of them show (plus ``margin`` pixels), in rows of ``columns``,
    left to right and top to bottom (empty cells stay black)."""
    shown = np.zeros(views[0].shape[:2], bool)
    for view in views:
        shown |= np.abs(view[..., :3] - view[0, 0, :3]).max(axis=-1) > 0.02  # not the plain background
    rows_on, cols_on = np.flatnonzero(shown.any(axis=1)), np.flatnonzero(shown.any(axis=0))
    if len(rows_on):
        r0, r1 = max(rows_on[0] - margin, 0), rows_on[-1] + margin + 1
        c0, c1 = max(cols_on[0] - margin, 0), cols_on[-1] + margin + 1
        views = [view[r0:r1, c0:c1] for view in views]
    blank = np.zeros_like(views[0])
    blank[..., 3] = 1.0
    rows = [views[k:k + columns] for k in range(0, len(views), columns)]
    rows = [np.concatenate(r + [blank] * (columns - len(r)), axis=1) for r in rows]
    return np.concatenate(rows[::-1], axis=0)  # Blender's rows run bottom to top


def read_png(bpy, path: Path) -> np.ndarray:  # noqa: ANN001
    image = bpy.data.images.load(str(path))
    w, h = image.size
    pixels = np.empty(w * h * 4, np.float32)
    image.pixels.foreach_get(pixels)
    bpy.data.images.remove(image)
    return pixels.reshape(h, w, 4)  # rows bottom to top, as Blender stores them


def write_png(bpy, pixels: np.ndarray, out: Path) -> None:  # noqa: ANN001
    h, w = pixels.shape[:2]
    image = bpy.data.images.new("before_after", w, h, alpha=False)
    image.pixels.foreach_set(np.ascontiguousarray(pixels, np.float32).ravel())
    out.parent.mkdir(parents=True, exist_ok=True)
    image.filepath_raw = str(out)
    image.file_format = "PNG"
    image.save()


if __name__ == "__main__":
    sys.exit(main())
