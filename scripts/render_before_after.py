"""Render relief meshes (.npz from scripts/relief_mesh_npz.py) side by side, three-quarter view.

Each mesh is built as the add-on builds it (``blender_addon/mesh_builder.build_mesh``, its default Auto
Smooth: edges over 30 degrees and the front's border with the walls sharp) without a material, so the
picture shows the geometry alone; Cycles on the CPU, headless. Run with the bpy environment:
    .venv-blender/bin/python scripts/render_before_after.py before.npz after.npz \\
        --size 960 --closeup 0.05 0.35 --out docs/images/relief_before_after.png
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("meshes", nargs="+", help=".npz files, left to right")
    parser.add_argument("--out", required=True)
    parser.add_argument("--size", type=int, default=480, help="pixels per view (square)")
    parser.add_argument("--columns", type=int, default=0, help="views per row (default: all in one row)")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--azimuth", type=float, default=-40.0)
    parser.add_argument("--elevation", type=float, default=20.0)
    parser.add_argument("--closeup", type=float, nargs=2, metavar=("X", "Y"),
                        help="a second row: the window half the view's size whose top-left corner is at (X, Y) "
                             "(fractions of the view, from its top left) at full resolution, under the views "
                             "shrunk to half size")
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
        if args.closeup:
            write_png(bpy, with_closeups(views, *args.closeup), Path(args.out))
        else:
            write_png(bpy, tiled(views, args.columns or len(views)), Path(args.out))
    print(f"wrote {args.out}")
    return 0


def add_mesh(bpy, data) -> object:  # noqa: ANN001 - bpy is the module
    """The add-on's own mesh (``mesh_builder.build_mesh``, Auto Smooth); an .npz without UVs gets smooth
    shading with edges over 30 degrees sharp only."""
    sys.path.insert(0, str(REPO))
    from blender_addon.mesh_builder import build_mesh

    uvs = data["uvs"] if "uvs" in data.files else None
    mesh = build_mesh("relief", data["vertices"], data["faces"], "AUTO", uvs=uvs)
    obj = bpy.data.objects.new("relief", mesh)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def with_closeups(views: list[np.ndarray], x: float, y: float) -> np.ndarray:
    """The views [h, w, 4] (rows bottom to top) shrunk to half size in a row, above a row of the same
    half-size window of each at full resolution (top-left corner at the fractions (x, y) from the top left),
    all cropped first to what they show."""
    views = cropped(views)
    h, w = views[0].shape[:2]
    hh, hw = h // 2, w // 2
    r0 = min(max(int(round((1.0 - y) * h)) - hh, 0), h - hh)  # bottom row of the window, bottom-up rows
    c0 = min(max(int(round(x * w)), 0), w - hw)
    small = [v[:2 * hh, :2 * hw].reshape(hh, 2, hw, 2, 4).mean(axis=(1, 3)) for v in views]
    close = [v[r0:r0 + hh, c0:c0 + hw] for v in views]
    line = np.ones((2, hw * len(views), 4), np.float32)
    return np.concatenate([np.concatenate(close, axis=1), line, np.concatenate(small, axis=1)], axis=0)


def tiled(views: list[np.ndarray], columns: int, margin: int = 12) -> np.ndarray:
    """Views [h, w, 4] cropped to what all of them show (plus ``margin`` pixels), in rows of ``columns``,
    left to right and top to bottom (empty cells stay black)."""
    views = cropped(views, margin)
    blank = np.zeros_like(views[0])
    blank[..., 3] = 1.0
    rows = [views[k:k + columns] for k in range(0, len(views), columns)]
    rows = [np.concatenate(r + [blank] * (columns - len(r)), axis=1) for r in rows]
    return np.concatenate(rows[::-1], axis=0)  # Blender's rows run bottom to top


def cropped(views: list[np.ndarray], margin: int = 12) -> list[np.ndarray]:
    """Views [h, w, 4] cropped to what all of them show, plus ``margin`` pixels."""
    shown = np.zeros(views[0].shape[:2], bool)
    for view in views:
        shown |= np.abs(view[..., :3] - view[0, 0, :3]).max(axis=-1) > 0.02  # not the plain background
    rows_on, cols_on = np.flatnonzero(shown.any(axis=1)), np.flatnonzero(shown.any(axis=0))
    if len(rows_on):
        r0, r1 = max(rows_on[0] - margin, 0), rows_on[-1] + margin + 1
        c0, c1 = max(cols_on[0] - margin, 0), cols_on[-1] + margin + 1
        views = [view[r0:r1, c0:c1] for view in views]
    return views


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
