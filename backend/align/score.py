"""How well a rendered view matches the input view: silhouette IoU and normal agreement, for many views at once.

The target (the input's mask and camera-space normal map) is resampled once into a square window around
the object at the scoring resolution; candidate cameras are rendered straight into that window (the
window is a screen-space affine on the projected vertices), so a small object in a large image is scored
at full detail and the cost does not depend on the input's size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..render.raster import rasterize, to_camera, to_screen
from ..render.shade import normal_image

FACE_BUDGET = 1 << 21
"Triangles (views x faces) rasterized per call; bounds the rasterizer's temporaries."


@dataclass
class MeshTensors:
    """The mesh centred on its bounding-box centre, on the alignment device."""

    vertices: torch.Tensor  # [V, 3] float32, centred
    faces: torch.Tensor  # [F, 3] int64
    center: np.ndarray  # [3] the removed offset, world units
    radius: float  # largest distance of a vertex from the centre


@dataclass
class Target:
    """The input view resampled into a square window of ``size`` pixels."""

    mask: torch.Tensor  # [S, S] float32 in [0, 1]
    normals: torch.Tensor  # [S, S, 3] float32, camera space
    origin: tuple[float, float]  # full-image pixel (u, v) of the window's top-left corner
    zoom: float  # window pixels per image pixel
    width: int  # the input image's size
    height: int


def mesh_tensors(vertices: np.ndarray, faces: np.ndarray, device: torch.device,
                 like: MeshTensors | None = None) -> MeshTensors:
    """The mesh centred on its bounding box (or on ``like``'s centre, for a reduced copy of the same mesh)."""
    v = np.asarray(vertices, np.float64)
    if like is None:
        center = 0.5 * (v.min(0) + v.max(0))
        radius = max(float(np.linalg.norm(v - center, axis=1).max()), 1e-9)
    else:
        center, radius = like.center, like.radius
    return MeshTensors(torch.tensor(v - center, dtype=torch.float32, device=device),
                       torch.tensor(np.asarray(faces, np.int64), device=device), center, radius)


def make_target(mask: np.ndarray, normals: np.ndarray, size: int, device: torch.device,
                margin: float = 0.15) -> Target:
    """Resample the input mask [H, W] and normals [H, W, 3] into a square window around the mask."""
    h, w = mask.shape
    rows, cols = np.nonzero(mask)
    side = (1.0 + 2.0 * margin) * max(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1)
    cu, cv = 0.5 * (cols.min() + cols.max() + 1), 0.5 * (rows.min() + rows.max() + 1)
    origin = (cu - 0.5 * side, cv - 0.5 * side)
    image = torch.cat([torch.tensor(mask, dtype=torch.float32)[..., None],
                       torch.tensor(normals, dtype=torch.float32) * torch.tensor(mask)[..., None]], -1)
    over = 2  # supersample, then average: an area filter for the downscale
    ticks = (torch.arange(size * over, dtype=torch.float32) + 0.5) / (size * over) * side  # window pixels
    u, v = torch.meshgrid(origin[0] + ticks, origin[1] + ticks, indexing="xy")  # [S*o, S*o] image pixels
    grid = torch.stack([u / w * 2 - 1, v / h * 2 - 1], -1)[None]
    sampled = F.grid_sample(image.permute(2, 0, 1)[None], grid, align_corners=False)  # [1, 4, S*o, S*o]
    sampled = F.avg_pool2d(sampled, over)[0].permute(1, 2, 0).to(device)  # [S, S, 4]
    normal = F.normalize(sampled[..., 1:], dim=-1, eps=1e-12)
    return Target(sampled[..., 0], normal, origin, size / side, w, h)


def render_window(mesh: MeshTensors, rotation: torch.Tensor, translation: torch.Tensor,
                  pixel_scale: torch.Tensor, target: Target, perspective: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask [B, S, S] and camera-space normals [B, S, S, 3] of B cameras (for the full image) in the window."""
    size = target.mask.shape[0]
    masks, normals = [], []
    step = max(1, FACE_BUDGET // max(1, len(mesh.faces)))
    for i in range(0, len(rotation), step):
        cam = to_camera(mesh.vertices, rotation[i:i + step], translation[i:i + step])  # [b, V, 3]
        screen = to_screen(cam, pixel_scale[i:i + step], target.height, target.width, perspective)
        shift = torch.tensor([target.origin[0], target.origin[1], 0.0], device=screen.device)
        zoom = torch.tensor([target.zoom, target.zoom, 1.0], device=screen.device)
        ras = rasterize((screen - shift) * zoom, mesh.faces, size, size, perspective)
        masks.append(ras.mask.float())
        normals.append(normal_image(ras, cam, mesh.faces, perspective=perspective))
    return torch.cat(masks), torch.cat(normals)


def score_views(masks: torch.Tensor, normals: torch.Tensor, target: Target,
                normal_weight: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(score, IoU, normal agreement), each [B], of rendered masks [B, S, S] and normals [B, S, S, 3].

    IoU is soft (min over max); normal agreement is the mean over the union of ``max(0, n . n_target)``
    where both are drawn, so a perfect match scores 1 and the score is ``(1 - w) IoU + w agreement``.
    """
    t_mask = target.mask[None]
    inter = torch.minimum(masks, t_mask)
    union = torch.maximum(masks, t_mask).sum((1, 2)).clamp_min(1e-6)
    iou = inter.sum((1, 2)) / union
    dots = (normals * target.normals[None]).sum(-1).clamp_min(0)  # [B, S, S]
    agree = (dots * inter).sum((1, 2)) / union
    return (1 - normal_weight) * iou + normal_weight * agree, iou, agree
