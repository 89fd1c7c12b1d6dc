"""Mask quality on the rendered segmentation set (tests/fixtures/segmentation/): IoU per case, old vs new.

"old" is the previous plain-background estimate (border median colour, flood fill from the border; kept here
as ``old_estimate``, frozen). Cases carry a group, reported apart: "tuning" (the estimator was tuned on them),
"tuned_on" (the earlier random draws, ``TUNED_ON_SEEDS`` 2027 to 2032: each held out at first, then its
failures were tuned on) and "held_out" (the draw of ``HELD_OUT_SEED`` = 2033 in
scripts/make_segmentation_set.py, never tuned on). The warning
flag is scored against IoU < 0.85 (precision, recall), over all cases and over the held-out ones. "new" is
what the relief engine uses now for an image as it is decoded (alpha when it carries a mask, else
``backend.relief.segment``). Prints a table, the time per image and the
ratio of the two (same process, same images). ``--set FOLDER`` runs another rendered set, e.g. the same
scenes at 640 x 480 (``scripts/make_segmentation_set.py FOLDER size=640x480``).

    .venv/bin/python bench/bench_segmentation.py [--set FOLDER]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.images import load_image  # noqa: E402
from backend.relief.mask import object_mask  # noqa: E402

SET = ROOT / "tests" / "fixtures" / "segmentation"


def old_estimate(rgb: np.ndarray) -> np.ndarray:
    """The estimator before this change (backend/relief/mask.py ``estimate_mask``), frozen for comparison."""
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])  # [P, 3]
    bg = np.median(border, axis=0)
    spread = np.percentile(np.linalg.norm(border - bg, axis=1), 90)
    if spread > 0.25:
        return np.ones(rgb.shape[:2], bool)
    similar = np.linalg.norm(rgb - bg, axis=-1) < max(0.08, 2.5 * spread)  # [H, W]
    labels, _ = ndimage.label(similar)
    edge_labels = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    mask = ~np.isin(labels, edge_labels[edge_labels > 0])
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
    return np.isin(labels, np.flatnonzero(sizes >= 0.02 * sizes.max()) + 1)


def old_mask(path: Path) -> np.ndarray:
    """The old path as a whole: any alpha that is not fully opaque was the mask, else the old estimate."""
    from PIL import Image

    with Image.open(path) as img:
        rgba = np.asarray(img.convert("RGBA"), np.float32) / 255.0
        had_alpha = "A" in img.mode
    if had_alpha and rgba[..., 3].min() < 1.0:
        return rgba[..., 3] > 0.5
    return old_estimate(rgba[..., :3])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


def cases(folder: Path = SET) -> list[dict]:
    return json.loads((folder / "manifest.json").read_text())["cases"]


def truth(case: dict, folder: Path = SET) -> np.ndarray:
    return load_image(str(folder / case["mask"])).rgba[..., 0] > 0.5


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--set", type=Path, default=SET, help="a folder made by scripts/make_segmentation_set.py "
                        "(e.g. the same scenes at another size: size=640x480)")
    folder = parser.parse_args().set
    rows, t_old, t_new = [], 0.0, 0.0
    for case in cases(folder):
        path, gt = folder / case["image"], truth(case, folder)
        t0 = time.perf_counter()
        old = old_mask(path)
        t1 = time.perf_counter()
        image = load_image(str(path))
        new = object_mask(image)
        t2 = time.perf_counter()
        t_old, t_new = t_old + t1 - t0, t_new + t2 - t1
        rows.append((case["name"], case["kind"], case.get("group", "tuning"), iou(old, gt), iou(new.mask, gt),
                     new.report))
    print(f"{'case':32} {'kind':10} {'group':8} {'old IoU':>8} {'new IoU':>8}  source     cover  conf  warning")
    for name, kind, group, a, b, rep in rows:
        flag = "yes" if rep.warning else ""
        print(f"{name:32} {kind:10} {group:8} {a:8.3f} {b:8.3f}  {rep.source:10} {rep.coverage:5.2f} "
              f"{rep.confidence:5.2f}  {flag}")
    for group in GROUPS:
        product = [r for r in rows if r[1] == "product" and r[2] == group]
        if product:
            print(f"\n{group} product shots ({len(product)}): old mean {np.mean([r[3] for r in product]):.3f} "
                  f"min {min(r[3] for r in product):.3f}; new mean {np.mean([r[4] for r in product]):.3f} "
                  f"min {min(r[4] for r in product):.3f}; {sum(r[4] >= 0.9 for r in product)}/{len(product)} "
                  "at IoU >= 0.9")
    print()
    _flag_score(rows, f"all {len(rows)} cases")
    _flag_score([r for r in rows if r[2] == "held_out"], "the held-out cases")
    n = len(rows)
    print(f"time per image: old {1000 * t_old / n:.0f} ms, new {1000 * t_new / n:.0f} ms "
          f"(new / old = {t_new / max(t_old, 1e-9):.1f}x; both include decoding)")


def _flag_score(rows: list[tuple], what: str) -> None:
    """Precision and recall of the warning flag against IoU < ``BAD`` over ``rows``."""
    if not rows:
        return
    flagged = [r for r in rows if r[5].warning]
    bad = [r for r in rows if r[4] < BAD]
    caught = [r for r in bad if r[5].warning]
    print(f"warning flag vs IoU < {BAD} over {what}: {len(bad)} bad, {len(flagged)} flagged, "
          f"{len(caught)} bad ones flagged; precision {len(caught) / max(1, len(flagged)):.2f}, "
          f"recall {len(caught) / max(1, len(bad)):.2f}" + (" (no bad masks)" if not bad else ""))


BAD = 0.85
"A mask under this IoU should come out with a warning."
GROUPS = ("tuning", "tuned_on", "held_out")


if __name__ == "__main__":
    main()
