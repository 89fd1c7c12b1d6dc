"""A picture sheet of synthesis samples: per view, the Blender RGB render, the normal map and the mask.

Makes a tiny run first (synthesis/configs/tiny.toml with Blender RGB renders on, fewer assets), or reads the
dataset of an existing run with ``--run``. Run with the backend environment (it starts Blender itself):
    .venv/bin/python scripts/synthesis_sheet.py --out docs/images/synthesis_sheet.png
    .venv/bin/python scripts/synthesis_sheet.py --run OUT --out sheet.png   # OUT: a run made with render.rgb
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from backend.atomic import write_atomic  # noqa: E402
from synthesis.config import load_config  # noqa: E402
from synthesis.pipeline import run  # noqa: E402
from synthesis.reader import Sample, iter_samples, load_manifest  # noqa: E402

GAP = 4
LABEL = 18
COLUMNS = ("RGB (Blender)", "normals", "mask")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the sheet, a PNG")
    parser.add_argument("--run", help="an existing run folder (made with render.rgb); default: make a tiny run")
    parser.add_argument("--config", default=str(REPO / "synthesis" / "configs" / "tiny.toml"))
    parser.add_argument("--count", type=int, default=3, help="assets per generator in the tiny run")
    parser.add_argument("--assets", type=int, default=4, help="rows of the sheet")
    parser.add_argument("--tile", type=int, default=160, help="pixels per picture")
    args = parser.parse_args()
    if args.run:
        samples = _samples(Path(args.run), args.assets)
    else:
        with tempfile.TemporaryDirectory() as folder:
            _tiny_run(Path(args.config), args.count, Path(folder) / "run")
            samples = _samples(Path(folder) / "run", args.assets)
    if not samples or samples[0].views[0].rgb is None:
        print("error: the run has no views with RGB renders; make it with render.rgb = true", file=sys.stderr)
        return 2
    sheet = _sheet(samples, args.tile)
    write_atomic(args.out, lambda temp: sheet.save(temp, format="PNG", optimize=True))
    print(f"{args.out}: {len(samples)} assets, {sheet.size[0]}x{sheet.size[1]}, "
          f"{Path(args.out).stat().st_size / 1024:.0f} KB")
    return 0


def _tiny_run(config_path: Path, count: int, out: Path) -> None:
    config = load_config(config_path)
    gens = tuple(dataclasses.replace(g, count=count) for g in config.generators if g.kind != "image_to_3d")
    config = dataclasses.replace(config, generators=gens, render=dataclasses.replace(config.render, rgb=True))
    summary = run(config, out, progress=True)
    for note in summary.notes:
        print(f"note: {note}", file=sys.stderr)


def _samples(run_folder: Path, count: int) -> list[Sample]:
    """Up to ``count`` samples, alternating between the generators so the sheet shows each kind."""
    dataset = run_folder / "dataset"
    every = [s for split in load_manifest(dataset)["splits"] for s in iter_samples(dataset, split)]
    by_kind: dict[str, list[Sample]] = {}
    for s in sorted(every, key=lambda s: s.id):
        by_kind.setdefault(s.id.split("-", 1)[0], []).append(s)
    picked: list[Sample] = []
    while len(picked) < count and any(by_kind.values()):
        for kind in sorted(by_kind):
            if by_kind[kind] and len(picked) < count:
                picked.append(by_kind[kind].pop(0))
    return picked


def _sheet(samples: list[Sample], tile: int):  # -> PIL.Image.Image
    from PIL import Image, ImageDraw

    views = len(samples[0].views)
    columns = views * len(COLUMNS)
    width = columns * (tile + GAP) + GAP
    height = LABEL + len(samples) * (tile + LABEL + GAP) + GAP
    sheet = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for c in range(columns):
        draw.text((GAP + c * (tile + GAP) + 2, 3), f"view {c // len(COLUMNS)}: {COLUMNS[c % len(COLUMNS)]}",
                  fill=(220, 220, 220))
    for r, sample in enumerate(samples):
        y = LABEL + r * (tile + LABEL + GAP)
        draw.text((GAP + 2, y + 3), sample.id, fill=(200, 200, 200))
        for k, view in enumerate(sample.views[:views]):
            mask = (view.mask * 255).astype(np.uint8)
            pictures = (view.rgb, np.asarray(_normal_png(view.normal_png)), np.stack([mask] * 3, -1))
            for j, picture in enumerate(pictures):
                x = GAP + (k * len(COLUMNS) + j) * (tile + GAP)
                image = Image.fromarray(np.asarray(picture, np.uint8)).resize((tile, tile), Image.LANCZOS)
                sheet.paste(image, (x, y + LABEL))
    return sheet


def _normal_png(data: bytes):  # -> PIL.Image.Image
    import io

    from PIL import Image

    return Image.open(io.BytesIO(data)).convert("RGB")


if __name__ == "__main__":
    raise SystemExit(main())
