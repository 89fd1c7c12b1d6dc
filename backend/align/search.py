"""Coarse search over the sphere of views: which rotations could have produced the input silhouette and normals.

Each of D view directions (a Fibonacci sphere) is rendered once, orthographically. Scale and translation
are taken out by moments: every render and the target are resampled into a frame centred on the
silhouette's centroid and scaled by the square root of its area. The roll about the viewing axis is then a
rotation of that frame, applied to the target only (K rolled copies, normals rotated with them), so the
whole D x K grid is scored with matrix products. The best rotations come back with the scale and offset
the moments imply, as starting points for the local refinement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..camera import look_at, rotation_angle
from .score import MeshTensors, render_window

SPAN = 1.6
"Half-width of the normalised frame, in units of sqrt(silhouette area)."


@dataclass
class Start:
    """A starting camera (for the centred mesh): rotation, camera-frame translation, pixels per world unit."""

    rotation: np.ndarray  # [3, 3]
    translation: np.ndarray  # [3]
    pixel_scale: float
    score: float


@dataclass(frozen=True)
class Moments:
    """Silhouette centroid (u, v) in pixels and sqrt(area) in pixels."""

    u: float
    v: float
    size: float


def sphere_directions(n: int) -> np.ndarray:
    """``n`` nearly even unit vectors [n, 3] (Fibonacci lattice)."""
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    phi = i * math.pi * (3.0 - math.sqrt(5.0))
    r = np.sqrt(1.0 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], 1)


def roll(angle: float) -> np.ndarray:
    """Rotation by ``angle`` about the camera's viewing axis (camera-frame z) [3, 3]."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def moments(mask: torch.Tensor) -> torch.Tensor:
    """(u, v, sqrt(area)) [B, 3] of masks [B, H, W] (pixel centres at +0.5)."""
    h, w = mask.shape[-2:]
    area = mask.sum((-2, -1)).clamp_min(1e-6)
    v = (mask.sum(-1) * (torch.arange(h, device=mask.device) + 0.5)).sum(-1) / area
    u = (mask.sum(-2) * (torch.arange(w, device=mask.device) + 0.5)).sum(-1) / area
    return torch.stack([u, v, area.sqrt()], -1)


def normalised(image: torch.Tensor, m: torch.Tensor, angles: torch.Tensor, size: int) -> torch.Tensor:
    """Resample images [B, C, H, W] into the moment frame of ``m`` [B, 3], rolled by ``angles`` [B].

    Frame point g (x right, y up, in units of sqrt(area)) is read at centroid + size * R(angle) g.
    """
    h, w = image.shape[-2:]
    g = torch.linspace(-SPAN, SPAN, size, device=image.device)
    gy, gx = torch.meshgrid(-g, g, indexing="ij")  # row 0 at the top: y up
    c, s = torch.cos(angles)[:, None, None], torch.sin(angles)[:, None, None]
    x, y = c * gx - s * gy, s * gx + c * gy  # [B, N, N]
    u = m[:, 0, None, None] + m[:, 2, None, None] * x
    v = m[:, 1, None, None] - m[:, 2, None, None] * y
    grid = torch.stack([u / w * 2 - 1, v / h * 2 - 1], -1)
    return F.grid_sample(image, grid, align_corners=False)


def rolled_target(mask: torch.Tensor, normals: torch.Tensor, rolls: int,
                  size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """K rolled copies of the target in its moment frame: masks [K, P] and normals [K, P, 3] (P = size^2).

    A camera rolled by phi sees the image rotated by phi and every normal rotated by phi about z; comparing
    the unrolled render with the target read at R(phi) g and turned back by -phi undoes exactly that.
    """
    angles = torch.arange(rolls, device=mask.device) * (2 * math.pi / rolls)
    image = torch.cat([mask[None], (normals * mask[..., None]).permute(2, 0, 1)])[None]  # [1, 4, H, W]
    m = moments(mask[None]).expand(rolls, 3)
    out = normalised(image.expand(rolls, -1, -1, -1), m, angles, size)  # [K, 4, N, N]
    c, s = torch.cos(-angles)[:, None, None], torch.sin(-angles)[:, None, None]
    nx, ny = out[:, 1], out[:, 2]
    n = torch.stack([c * nx - s * ny, s * nx + c * ny, out[:, 3]], -1)  # [K, N, N, 3]
    return out[:, 0].reshape(rolls, -1), n.reshape(rolls, -1, 3)


def coarse_search(mesh: MeshTensors, target_mask: torch.Tensor, target_normals: torch.Tensor, shrink: int,
                  image_shape: tuple[int, int], directions: int, rolls: int, size: int, keep: int,
                  normal_weight: float, min_separation: float = 20.0) -> list[Start]:
    """The ``keep`` best-scoring, mutually distinct (``min_separation`` degrees) starting cameras.

    The target [h, w] is the input image [H, W] = ``image_shape`` reduced ``shrink`` times (pixel (0, 0)
    at the same corner); the starts are for the full image.
    """
    from .score import Target

    dev = mesh.vertices.device
    render = 2 * size
    rots = np.stack([look_at(d * 3 * mesh.radius, np.zeros(3), _up(d))[0] for d in sphere_directions(directions)])
    trans = np.tile([0.0, 0.0, -3 * mesh.radius], (directions, 1))
    pixel_scale = render / (2.2 * mesh.radius)
    window = Target(torch.zeros(render, render), torch.zeros(render, render, 3), (0.0, 0.0), 1.0, render, render)
    masks, normals = render_window(mesh, torch.tensor(rots, dtype=torch.float32, device=dev),
                                   torch.tensor(trans, dtype=torch.float32, device=dev),
                                   torch.full((directions,), pixel_scale, device=dev), window, perspective=False)
    m = moments(masks)  # [D, 3]
    image = torch.cat([masks[:, None], normals.permute(0, 3, 1, 2)], 1)
    views = normalised(image, m, torch.zeros(directions, device=dev), size)  # [D, 4, N, N]
    vm, vn = views[:, 0].reshape(directions, -1), views[:, 1:].permute(0, 2, 3, 1).reshape(directions, -1, 3)
    tm, tn = rolled_target(target_mask, target_normals, rolls, size)
    score = _grid_scores(vm, vn, tm, tn, normal_weight)  # [D, K]
    t_mom = moments(target_mask[None])[0] * shrink  # full-image pixels
    starts: list[Start] = []
    for flat in torch.argsort(score.flatten(), descending=True).tolist():
        d, k = divmod(flat, rolls)
        rotation = roll(2 * math.pi * k / rolls) @ rots[d]
        if any(rotation_angle(rotation, s.rotation) < min_separation for s in starts):
            continue
        starts.append(_start(rotation, k, rolls, m[d], t_mom, pixel_scale, render, image_shape, mesh.radius,
                             float(score[d, k])))
        if len(starts) == keep:
            break
    return starts


def _up(direction: np.ndarray) -> np.ndarray:
    return np.array([0.0, 1.0, 0.0]) if abs(direction[2]) > 0.999 else np.array([0.0, 0.0, 1.0])


def _grid_scores(vm: torch.Tensor, vn: torch.Tensor, tm: torch.Tensor, tn: torch.Tensor,
                 normal_weight: float) -> torch.Tensor:
    """Scores [D, K] of D normalised views against K rolled targets (soft masks as products)."""
    inter = vm @ tm.T  # [D, K]
    union = (vm.sum(1)[:, None] + tm.sum(1)[None] - inter).clamp_min(1e-6)
    agree = torch.einsum("dpc,kpc->dk", vn, tn)  # masked normals: the dot already carries both masks
    return (1 - normal_weight) * inter / union + normal_weight * agree / union


def _start(rotation: np.ndarray, k: int, rolls: int, view: torch.Tensor, target: torch.Tensor, pixel_scale: float,
           render: int, shape: tuple[int, ...], radius: float, score: float) -> Start:
    """Scale and translation implied by matching the view's moments to the target's (see the module doc)."""
    view, target = view.double().cpu().numpy(), target.double().cpu().numpy()
    scale = target[2] * pixel_scale / max(view[2], 1e-9)  # target pixels per world unit
    plane = np.array([view[0] - render / 2, render / 2 - view[1]]) / pixel_scale  # centroid, render camera plane
    h, w = shape
    aim = np.array([target[0] - w / 2, h / 2 - target[1]]) / scale
    offset = aim - roll(2 * math.pi * k / rolls)[:2, :2] @ plane
    return Start(rotation, np.array([offset[0], offset[1], -3 * radius]), scale, score)
