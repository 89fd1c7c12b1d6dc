"""Evaluation metrics: normal maps (NE, SNE and their statistics) and geometry (Chamfer, F-score, normals).

Normal maps follow the project's convention (camera space, +X right, +Y up, +Z to the viewer; images store
``(n + 1) / 2``). The protocol is the one of Hi3DGen's normal-estimation evaluation (``lzt02/NiRNE``):

- the object mask is eroded by a 10 x 10 square kernel (one pass, OpenCV ``erode``);
- NE is the mean angle between predicted and true normals over the mask, in degrees;
- SNE is the same over the *sharp* pixels: Canny edges (thresholds 50, 100) of the grey version of the true
  normal image, dilated by a 3 x 3 kernel, inside the eroded mask;
- with them, as StableNormal's evaluation does: the median angle and the shares of pixels under 11.25, 22.5
  and 30 degrees (percent).

Geometry compares point samples of two surfaces: Chamfer distance (the mean of the two directed mean
nearest-neighbour distances, not squared), F-score at a distance threshold (harmonic mean of precision =
share of predicted points within the threshold of the truth, and recall = the converse) and normal
consistency (mean absolute cosine between each point's normal and its nearest neighbour's, both ways).
"""

from __future__ import annotations

import numpy as np

THRESHOLDS_DEG = (11.25, 22.5, 30.0)


def decode_normal_image(image: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3(+)] (or floats in [0, 1]) storing (n + 1) / 2 -> float32 unit normals [H, W, 3]."""
    rgb = np.asarray(image)[..., :3]
    values = rgb.astype(np.float32) / 255.0 if rgb.dtype == np.uint8 else rgb.astype(np.float32)
    n = values * 2.0 - 1.0
    return n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)


def encode_normal_image(normals: np.ndarray) -> np.ndarray:
    """Unit normals [H, W, 3] -> uint8 image storing (n + 1) / 2."""
    return np.clip(np.round((np.asarray(normals) + 1.0) * 0.5 * 255.0), 0, 255).astype(np.uint8)


def angular_error(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-pixel angle in degrees [H, W] between normal fields [H, W, 3] (normalised here)."""
    a = pred / np.maximum(np.linalg.norm(pred, axis=-1, keepdims=True), 1e-12)
    b = gt / np.maximum(np.linalg.norm(gt, axis=-1, keepdims=True), 1e-12)
    cos = np.clip((a * b).sum(-1), -1.0, 1.0)
    return np.degrees(np.arccos(cos))


def erode_mask(mask: np.ndarray, pixels: int = 10) -> np.ndarray:
    """The mask eroded by a ``pixels`` x ``pixels`` square (as the NiRNE evaluation); bool [H, W]."""
    import cv2

    if pixels <= 0:
        return np.asarray(mask, bool)
    kernel = np.ones((pixels, pixels), np.uint8)
    return cv2.erode(np.asarray(mask, np.uint8), kernel, iterations=1) > 0


def sharp_mask(gt_normals: np.ndarray) -> np.ndarray:
    """Pixels near edges of the true normal image: Canny(50, 100) on its grey version, dilated 3 x 3."""
    import cv2

    grey = cv2.cvtColor(encode_normal_image(gt_normals), cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(grey, 50, 100)
    return cv2.dilate(edges, np.ones((3, 3), np.uint8), iterations=1) > 0


def _statistics(errors: np.ndarray, prefix: str) -> dict[str, float]:
    if errors.size == 0:
        return {f"{prefix}": float("nan"), f"{prefix}_median": float("nan"),
                **{f"{prefix}_under_{t:g}": float("nan") for t in THRESHOLDS_DEG}}
    return {prefix: float(errors.mean()), f"{prefix}_median": float(np.median(errors)),
            **{f"{prefix}_under_{t:g}": float((errors < t).mean() * 100.0) for t in THRESHOLDS_DEG}}


def normal_map_metrics(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, erode: int = 10) -> dict[str, float]:
    """NE and SNE (degrees) with medians and shares under 11.25 / 22.5 / 30 degrees (percent).

    ``pred`` and ``gt``: normals [H, W, 3] (floats in [-1, 1]); ``mask`` [H, W] (object pixels). Keys: ``NE``,
    ``NE_median``, ``NE_under_11.25``..., ``SNE``, ``SNE_median``, ``SNE_under_11.25``..., ``pixels``,
    ``sharp_pixels``. SNE is NaN when the eroded mask holds no sharp pixel.
    """
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != 3 or mask.shape != pred.shape[:2]:
        raise ValueError(f"expected pred and gt [H, W, 3] and mask [H, W], got {pred.shape}, {gt.shape}, "
                         f"{mask.shape}")
    inside = erode_mask(mask, erode)
    sharp = inside & sharp_mask(gt)
    errors = angular_error(pred, gt)
    return {**_statistics(errors[inside], "NE"), **_statistics(errors[sharp], "SNE"),
            "pixels": int(inside.sum()), "sharp_pixels": int(sharp.sum())}


def _nearest(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from scipy.spatial import cKDTree

    distance, index = cKDTree(target).query(source, k=1)
    return distance, index


def geometry_metrics(pred_points: np.ndarray, gt_points: np.ndarray, threshold: float = 0.01,
                     pred_normals: np.ndarray | None = None, gt_normals: np.ndarray | None = None
                     ) -> dict[str, float]:
    """Chamfer distance, precision / recall / F-score at ``threshold`` and (with normals) normal consistency.

    Points [N, 3] and [M, 3] in the same frame and unit (the normalised cube for generated assets).
    """
    pred, gt = np.asarray(pred_points, np.float64), np.asarray(gt_points, np.float64)
    if pred.ndim != 2 or gt.ndim != 2 or pred.shape[1] != 3 or gt.shape[1] != 3 or not len(pred) or not len(gt):
        raise ValueError("expected two non-empty point sets [N, 3]")
    d_pred, i_pred = _nearest(pred, gt)  # each predicted point -> the truth
    d_gt, i_gt = _nearest(gt, pred)
    precision, recall = float((d_pred < threshold).mean()), float((d_gt < threshold).mean())
    f_score = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    out = {"chamfer": float(0.5 * (d_pred.mean() + d_gt.mean())), "precision": precision, "recall": recall,
           "f_score": f_score, "threshold": threshold}
    if pred_normals is not None and gt_normals is not None:
        a = np.asarray(pred_normals, np.float64)
        b = np.asarray(gt_normals, np.float64)
        a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
        forward = np.abs((a * b[i_pred]).sum(1)).mean()
        backward = np.abs((b * a[i_gt]).sum(1)).mean()
        out["normal_consistency"] = float(0.5 * (forward + backward))
    return out


def sample_mesh(vertices: np.ndarray, faces: np.ndarray, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` area-uniform points on a triangle mesh and their face normals (for ``geometry_metrics``)."""
    v, f = np.asarray(vertices, np.float64), np.asarray(faces, np.int64)
    if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0 or f.min() < 0 or f.max() >= len(v):
        raise ValueError("faces must be a non-empty [F, 3] array of vertex indices")
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    cross = np.cross(b - a, c - a)
    area = np.linalg.norm(cross, axis=1)
    if area.sum() <= 0:
        raise ValueError("the mesh has no area")
    rng = np.random.default_rng(seed)
    face = rng.choice(len(f), size=count, p=area / area.sum())
    r1, r2 = np.sqrt(rng.random(count)), rng.random(count)
    points = (1 - r1)[:, None] * a[face] + (r1 * (1 - r2))[:, None] * b[face] + (r1 * r2)[:, None] * c[face]
    normals = cross[face] / np.maximum(area[face], 1e-30)[:, None]
    return points, normals
