"""The detail filter: normal variation at several scales, so smooth blobs are rejected."""

from __future__ import annotations

import numpy as np

from ..config import FilterConfig
from ..labels import sample_surface
from ..mesh import Mesh
from .base import FilterResult, verdict

MAX_NEIGHBOURS = 64


def detail_filter(mesh: Mesh, cfg: FilterConfig) -> FilterResult:
    score = detail_score(mesh, cfg.detail_radii, cfg.detail_samples)
    return verdict("detail", score, cfg.min_detail_score, score >= cfg.min_detail_score, "detail score")


def detail_score(mesh: Mesh, radii: tuple[float, ...], samples: int, seed: int = 0) -> float:
    """Mean over ``radii`` of the mean normal dispersion 1 - |mean of the unit normals within r| at a sample.

    0 on a plane; about (r / R)^2 / 4 on a sphere of radius R; edges, grooves and bumps raise it.
    """
    from scipy.spatial import cKDTree

    points, normals = sample_surface(mesh, samples, np.random.default_rng(seed))
    tree = cKDTree(points)
    scores = []
    for r in radii:
        dist, index = tree.query(points, k=min(MAX_NEIGHBOURS, len(points)), distance_upper_bound=r)  # [N, K]
        found = np.isfinite(dist)  # the sample itself is always found
        gathered = normals[np.where(found, index, 0)] * found[..., None]  # [N, K, 3]
        mean = gathered.sum(1) / found.sum(1, keepdims=True)
        scores.append(float(np.mean(1.0 - np.linalg.norm(mean, axis=1))))
    return float(np.mean(scores))
