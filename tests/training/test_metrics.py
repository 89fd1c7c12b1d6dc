"""Metrics on analytic cases: identical normals, a known rotation, a shifted point set, a sharp box edge."""

from __future__ import annotations

import numpy as np
import pytest

from training.metrics import (
    decode_normal_image,
    encode_normal_image,
    erode_mask,
    geometry_metrics,
    normal_map_metrics,
    sample_mesh,
    sharp_mask,
)


def _dome(size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size]
    x, y = (xx - size / 2 + 0.5) / (size * 0.4), -(yy - size / 2 + 0.5) / (size * 0.4)
    mask = x**2 + y**2 < 1.0
    z = np.sqrt(np.clip(1.0 - x**2 - y**2, 0.0, 1.0))
    n = np.dstack([x, y, z])
    n[~mask] = (0.0, 0.0, 1.0)
    return n / np.linalg.norm(n, axis=-1, keepdims=True), mask


def _rotate(n: np.ndarray, degrees: float, axis: int) -> np.ndarray:
    """Rotate about a coordinate axis: a normal perpendicular to it turns by exactly ``degrees``."""
    a = np.radians(degrees)
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = np.cos(a), -np.sin(a), np.sin(a), np.cos(a)
    return n @ r.T


def test_identical_normals_have_zero_error():
    n, mask = _dome()
    m = normal_map_metrics(n, n, mask)
    assert m["NE"] == pytest.approx(0.0, abs=1e-5) and m["NE_median"] == pytest.approx(0.0, abs=1e-5)
    assert m["NE_under_11.25"] == 100.0 and m["pixels"] > 0


def test_a_known_rotation_gives_its_angle_everywhere():
    n, mask = _dome()
    n[..., 0] = 0.0  # a cylinder-like field: every normal is perpendicular to the x axis
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    m = normal_map_metrics(_rotate(n, 20.0, axis=0), n, mask)
    assert m["NE"] == pytest.approx(20.0, abs=1e-6) and m["NE_median"] == pytest.approx(20.0, abs=1e-6)
    assert (m["NE_under_11.25"], m["NE_under_22.5"], m["NE_under_30"]) == (0.0, 100.0, 100.0)


def test_the_mask_is_eroded_by_ten_pixels():
    mask = np.zeros((60, 60), bool)
    mask[10:50, 10:50] = True  # 40 x 40
    eroded = erode_mask(mask, 10)
    rows = np.flatnonzero(eroded.any(1))
    assert eroded.sum() == 31 * 31 and (rows[0], rows[-1]) == (15, 45)  # a 10 x 10 kernel trims 5 | 4


def test_sne_counts_only_the_sharp_pixels():
    """Two flat faces meeting at a crease: errors only on the crease show in SNE, not (much) in NE."""
    size = 80
    gt = np.zeros((size, size, 3))
    gt[:, : size // 2] = (-0.6, 0.0, 0.8)
    gt[:, size // 2 :] = (0.6, 0.0, 0.8)
    sharp = sharp_mask(gt)
    assert sharp[:, size // 2 - 2 : size // 2 + 2].any() and not sharp[:, :20].any()
    pred = gt.copy()
    pred[sharp] = _rotate(gt[sharp], 45.0, axis=1)  # both faces are perpendicular to y
    m = normal_map_metrics(pred, gt, np.ones((size, size), bool))
    assert m["SNE"] == pytest.approx(45.0, abs=1e-6) and m["NE"] < 10.0 and m["sharp_pixels"] > 0


def test_normal_images_round_trip():
    n, _ = _dome(32)
    assert np.degrees(np.arccos(np.clip((decode_normal_image(encode_normal_image(n)) * n).sum(-1), -1, 1))).max() < 1


def test_chamfer_of_a_shifted_lattice_is_the_shift():
    grid = np.stack(np.meshgrid(*[np.arange(5.0)] * 3, indexing="ij"), -1).reshape(-1, 3)
    m = geometry_metrics(grid + (0.1, 0.0, 0.0), grid, threshold=0.05)
    assert m["chamfer"] == pytest.approx(0.1) and m["f_score"] == 0.0
    m = geometry_metrics(grid + (0.1, 0.0, 0.0), grid, threshold=0.2)
    assert m["f_score"] == 1.0 and geometry_metrics(grid, grid)["chamfer"] == 0.0


def test_normal_consistency_of_a_sampled_cube():
    v = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], float)
    f = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                  [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    p, n = sample_mesh(v, f, 4000, seed=1)
    q, m = sample_mesh(v, f, 4000, seed=2)
    out = geometry_metrics(p, q, threshold=0.05, pred_normals=n, gt_normals=m)
    assert out["normal_consistency"] > 0.95 and out["f_score"] > 0.95
    assert geometry_metrics(p, q, pred_normals=n, gt_normals=np.roll(m, 1, axis=1))["normal_consistency"] < 0.8
