"""NE / SNE of a yoso-normal folder on a split, through the inference pipeline the engines run.

Each sample's image goes through ``backend.nirne.pipeline.estimate_normals`` at its own size (no resize), and
``training.metrics.normal_map_metrics`` scores it against the ground truth (mask eroded by ``erode`` pixels, the
paper's 10 by default; sharp pixels by edge detection on the ground truth). The result is the mean over samples
of each metric (SNE over the samples that have sharp pixels).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from backend.nirne.loading import load_nirne
from backend.nirne.pipeline import estimate_normals

from ..metrics import normal_map_metrics
from .data import SampleFolder


def evaluate_release(folder: Path, split: Path, erode: int = 10,
                     device: torch.device | str = "cpu") -> dict[str, float]:
    """Mean NE / SNE (and medians, threshold shares) of the release ``folder`` over the samples of ``split``."""
    models = load_nirne(Path(folder), device, torch.float32)
    samples = SampleFolder(Path(split))
    rows = []
    for sample in samples.samples:
        image = ((sample.pixels.permute(1, 2, 0).numpy() + 1.0) * 0.5).clip(0.0, 1.0)  # [H, W, 3]
        mask = sample.mask.numpy()
        pred = estimate_normals(models, image, mask, processing_resolution=max(image.shape[:2]))
        rows.append(normal_map_metrics(pred, sample.normals.permute(1, 2, 0).numpy(), mask, erode=erode))
    keys = rows[0].keys()
    with np.errstate(all="ignore"):
        return {k: float(np.nanmean([r[k] for r in rows])) if any(np.isfinite(r[k]) for r in rows)
                else float("nan") for k in keys}
