"""Put the input photo beside a before/after render (scripts/render_before_after.py) and label the panels.

The README's picture of a photo without alpha (issue #13): the photo, the relief made with the old automatic
mask, the relief made with the current one. Run with the backend environment (it needs Pillow, not bpy);
scripts/make_photo_before_after.sh runs the whole chain:
    .venv/bin/python scripts/photo_before_after.py photo.png views.png before.npz after.npz --out out.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

LABEL_HEIGHT = 40
"Pixels of the label strip under the panels, at the final width."


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photo", help="the input image")
    parser.add_argument("views", help="render_before_after.py's PNG of the two meshes, before on the left")
    parser.add_argument("before", help="the before mesh's .npz (for its mask's coverage)")
    parser.add_argument("after", help="the after mesh's .npz")
    parser.add_argument("--out", required=True)
    parser.add_argument("--width", type=int, default=700, help="the picture's width in pixels")
    args = parser.parse_args()

    with Image.open(args.views) as img:
        views = img.convert("RGB")
    with Image.open(args.photo) as img:
        photo = img.convert("RGB")
    labels = ["input: photo, no alpha",
              f"before: old mask ({coverage(args.before)} of frame)",
              f"after: current mask ({coverage(args.after)})"]
    picture = compose(photo, views, labels, args.width)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.png")
    picture.save(tmp, optimize=True)
    tmp.replace(out)  # no half-written picture
    print(f"wrote {out} ({picture.width} x {picture.height})")
    return 0


def coverage(path: str) -> str:
    data = np.load(path)
    return f"{float(data['mask_coverage']):.0%}" if "mask_coverage" in data.files else "?"


def compose(photo: Image.Image, views: Image.Image, labels: list[str], width: int) -> Image.Image:
    """[photo | before | after] at ``width`` pixels, the photo letterboxed to a third of the views' width
    (each view is half of ``views``), a label under each panel."""
    cell_w, cell_h = views.width // 2, views.height
    scale = min(cell_w / photo.width, cell_h / photo.height) * 0.9
    shown = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.Resampling.LANCZOS)
    row = Image.new("RGB", (cell_w + views.width, cell_h), views.getpixel((0, 0)))  # the renders' background
    row.paste(shown, ((cell_w - shown.width) // 2, (cell_h - shown.height) // 2))
    row.paste(views, (cell_w, 0))
    height = round(row.height * width / row.width)
    row = row.resize((width, height), Image.Resampling.LANCZOS)
    picture = Image.new("RGB", (width, height + LABEL_HEIGHT), (40, 42, 48))
    picture.paste(row, (0, 0))
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=14)
    for k, text in enumerate(labels):
        centre = (k + 0.5) * width / len(labels)
        draw.text((centre, height + LABEL_HEIGHT / 2), text, fill=(235, 235, 235), font=font, anchor="mm")
    return picture


if __name__ == "__main__":
    sys.exit(main())
