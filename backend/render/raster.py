"""A small triangle rasterizer in torch: depth, face id and barycentrics per pixel, for a batch of views.

Vectorised, with no Python loop over triangles: every triangle's pixel bounding box is expanded into
(triangle, pixel) pairs, each pair is tested with edge functions, and the nearest triangle of each pixel is
kept by one ``scatter_reduce(amin)`` over an int64 that packs the depth (float32 bits, which order like the
floats for positive values) above the face id. The winner's barycentrics and depth are then recomputed per
pixel. Pairs are processed in chunks so memory stays bounded. Not differentiable; the face ids and
barycentrics it returns are what a differentiable shading step needs.

Conventions are those of ``backend/camera.py``: pixel centres at (c + 0.5, r + 0.5), v down, depth = -z_cam.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..camera import Camera

EMPTY = torch.iinfo(torch.int64).max
MAX_PAIRS = 1 << 18
"(triangle, pixel) pairs tested per chunk: about 20 MB of temporaries (larger chunks leave the caches: slower)."


@dataclass
class Raster:
    """Per-pixel results for B views of H x W pixels; ``face_id`` is -1 where nothing is drawn."""

    face_id: torch.Tensor  # [B, H, W] int64
    depth: torch.Tensor  # [B, H, W] float32, +inf where empty
    bary: torch.Tensor  # [B, H, W, 3] float32, perspective-correct, 0 where empty

    @property
    def mask(self) -> torch.Tensor:
        return self.face_id >= 0  # [B, H, W] bool


def camera_tensors(cameras: list[Camera], device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rotations [B, 3, 3], translations [B, 3], pixel scales [B]) of cameras sharing size and projection."""
    first = cameras[0]
    if any((c.width, c.height, c.orthographic) != (first.width, first.height, first.orthographic) for c in cameras):
        raise ValueError("one batch of views must share the image size and the projection type")
    rot = torch.tensor(np.stack([c.rotation for c in cameras]), dtype=dtype, device=device)
    trans = torch.tensor(np.stack([c.translation for c in cameras]), dtype=dtype, device=device)
    scale = torch.tensor([c.pixel_scale for c in cameras], dtype=dtype, device=device)
    return rot, trans, scale


def to_camera(vertices: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """World vertices [V, 3] -> camera-frame vertices [B, V, 3] for B views."""
    return torch.einsum("bij,vj->bvi", rotation, vertices) + translation[:, None, :]


def to_screen(cam: torch.Tensor, pixel_scale: torch.Tensor, height: int, width: int,
              perspective: bool) -> torch.Tensor:
    """Camera-frame points [B, V, 3] -> screen [B, V, 3]: (u, v) pixels and depth (``Camera.project``)."""
    depth = -cam[..., 2]
    w = depth.clamp_min(1e-12) if perspective else torch.ones_like(depth)
    s = pixel_scale[:, None]
    u = 0.5 * width + s * cam[..., 0] / w
    v = 0.5 * height - s * cam[..., 1] / w
    return torch.stack([u, v, depth], -1)


def rasterize_cameras(vertices: torch.Tensor, faces: torch.Tensor, cameras: list[Camera]) -> Raster:
    """Rasterize one mesh (world vertices [V, 3], faces [F, 3]) from each camera of a batch."""
    rot, trans, scale = camera_tensors(cameras, vertices.device, vertices.dtype)
    c = cameras[0]
    screen = to_screen(to_camera(vertices, rot, trans), scale, c.height, c.width, not c.orthographic)
    return rasterize(screen, faces, c.height, c.width, perspective=not c.orthographic, near=c.clip_start)


def rasterize(screen: torch.Tensor, faces: torch.Tensor, height: int, width: int, perspective: bool,
              near: float = 1e-4, max_pairs: int = MAX_PAIRS) -> Raster:
    """Screen-space vertices [B, V, 3] (u, v, depth) and faces [F, 3] -> ``Raster`` of [B, H, W].

    Triangles with a vertex nearer than ``near`` are skipped (no clipping). Both windings are drawn.
    """
    b, f = screen.shape[0], faces.shape[0]
    tri = screen[:, faces.long()].reshape(b * f, 3, 3).float()  # [T = B*F, 3 corners, (u, v, depth)]
    box, count = _boxes(tri, height, width, near)  # [T, 4] (c0, r0, c1, r1), [T] pixels per box
    edges = _edge_planes(tri)  # [T, 3, 3]
    packed = torch.full((b * height * width,), EMPTY, dtype=torch.int64, device=screen.device)
    ids = torch.nonzero(count > 0).squeeze(1)
    for chunk in _chunks(ids, count[ids], max_pairs):
        _draw(tri, edges, box, count, chunk, f, height, width, perspective, packed)
    face = torch.where(packed == EMPTY, torch.full_like(packed, -1), packed & 0xFFFFFFFF)  # global id b*F + f
    depth, bary = _resolve(tri, edges, face, height, width, perspective)
    face_id = torch.where(face >= 0, face % max(f, 1), face)
    return Raster(face_id.view(b, height, width), depth.view(b, height, width), bary.view(b, height, width, 3))


def _boxes(tri: torch.Tensor, height: int, width: int, near: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre bounding boxes of triangles [T, 3, 3] -> ([T, 4] int64, [T] pixel counts, 0 if culled)."""
    lo, hi = tri[..., :2].min(1).values, tri[..., :2].max(1).values  # [T, 2] (u, v)
    first = torch.ceil(lo - 0.5).clamp(-1, max(width, height)).long()  # first pixel index whose centre >= lo
    last = torch.floor(hi - 0.5).clamp(-1, max(width, height)).long()
    first.clamp_(min=0)
    last[:, 0].clamp_(max=width - 1)
    last[:, 1].clamp_(max=height - 1)
    span = (last - first + 1).clamp_min(0)  # [T, 2]
    edge = (tri[:, 1:, :2] - tri[:, :1, :2]).square().sum((1, 2))  # [T] squared edge lengths of two sides
    sliver = _area(tri).abs() <= 1e-5 * edge + 1e-12  # degenerate up to float32 rounding
    ok = (tri[..., 2] > near).all(1) & torch.isfinite(tri).all((1, 2)) & ~sliver
    count = torch.where(ok, span[:, 0] * span[:, 1], torch.zeros_like(span[:, 0]))
    return torch.cat([first, last], 1), count


def _area(tri: torch.Tensor) -> torch.Tensor:
    """Twice the signed screen area of triangles [T, 3, 3] -> [T]."""
    a = tri[:, 1, :2] - tri[:, 0, :2]
    c = tri[:, 2, :2] - tri[:, 0, :2]
    return a[:, 0] * c[:, 1] - a[:, 1] * c[:, 0]


def _edge_planes(tri: torch.Tensor) -> torch.Tensor:
    """Screen barycentrics as planes about corner 0: w_i = A dx + B dy + C, (dx, dy) = p - p_0 [T, 3, 3 (A, B, C)].

    Relative to corner 0 so the constant stays small: with absolute pixel coordinates float32 loses the
    precision of small triangles.
    """
    rel = tri[..., :2] - tri[:, :1, :2]  # [T, 3, 2]
    x, y = rel[..., 0], rel[..., 1]
    area = _area(tri)
    area = torch.where(area.abs() > 1e-12, area, torch.ones_like(area))[:, None]
    xj, yj = x.roll(-1, 1), y.roll(-1, 1)  # corner i+1
    xk, yk = x.roll(-2, 1), y.roll(-2, 1)  # corner i+2
    # w_i(p) = cross(p_j - p, p_k - p) / area, linear in p
    a = (yj - yk) / area
    b = (xk - xj) / area
    c = (xj * yk - xk * yj) / area
    return torch.stack([a, b, c], -1)


def _chunks(ids: torch.Tensor, counts: torch.Tensor, max_pairs: int) -> list[torch.Tensor]:
    """Split triangle ids into runs of at most ``max_pairs`` pairs (a single huge triangle is its own run)."""
    if len(ids) == 0:
        return []
    ends = torch.cumsum(counts, 0)
    group = (ends - counts) // max_pairs  # [T] chunk index of each triangle, by where its pairs start
    bounds = torch.nonzero(group[1:] != group[:-1]).squeeze(1) + 1
    return list(torch.tensor_split(ids, bounds.cpu()))


def _draw(tri: torch.Tensor, edges: torch.Tensor, box: torch.Tensor, count: torch.Tensor, ids: torch.Tensor,
          f: int, height: int, width: int, perspective: bool, packed: torch.Tensor) -> None:
    """Test every pixel of the boxes of triangles ``ids`` and keep the nearest per pixel in ``packed``."""
    n = count[ids]  # [K]
    owner = torch.repeat_interleave(torch.arange(len(ids), device=ids.device), n)  # [P] local triangle
    ints = torch.stack([box[ids, 2] - box[ids, 0] + 1, box[ids, 0], box[ids, 1], torch.cumsum(n, 0) - n, ids], 1)
    bw, c0, r0, start, t = ints.index_select(0, owner).unbind(1)  # [P] each
    local = torch.arange(len(owner), device=ids.device) - start
    row = torch.div(local, bw, rounding_mode="floor")
    col = c0 + (local - row * bw)
    row += r0
    floats = torch.cat([edges[ids].flatten(1), tri[ids, 0, :2], tri[ids, :, 2]], 1).index_select(0, owner)
    w = _plane_weights(floats[:, :9].view(-1, 3, 3), floats[:, 9:11], col, row)  # [P, 3]
    inside = w.min(1).values >= -1e-6
    depth = _depth(w, floats[:, 11:], perspective).clamp_min(1e-30)  # outside pairs may extrapolate to <= 0
    key = (depth.view(torch.int32).long() << 32) | t  # depth > 0: its bits order like the floats
    key = torch.where(inside, key, EMPTY)  # masking costs less than compacting five arrays
    pixel = torch.div(t, f, rounding_mode="floor") * (height * width) + row * width + col
    packed.scatter_reduce_(0, pixel, key, "amin")


def _plane_weights(planes: torch.Tensor, corner: torch.Tensor, col: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
    """Screen-space barycentrics [P, 3] at the centres of pixels (col, row) [P] from planes [P, 3, 3] about
    corner 0 [P, 2]."""
    x = (col.float() + 0.5 - corner[:, 0])[:, None]
    y = (row.float() + 0.5 - corner[:, 1])[:, None]
    return planes[..., 0] * x + planes[..., 1] * y + planes[..., 2]


def _depth(w: torch.Tensor, d: torch.Tensor, perspective: bool) -> torch.Tensor:
    """Depth [P] from screen barycentrics [P, 3] and corner depths [P, 3] (1 / depth is screen-linear)."""
    if perspective:
        return 1.0 / (w / d).sum(1).clamp_min(1e-20)
    return (w * d).sum(1)


def _resolve(tri: torch.Tensor, edges: torch.Tensor, face: torch.Tensor, height: int, width: int,
             perspective: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Depth [N] and perspective-correct barycentrics [N, 3] of each pixel's winning triangle (``face`` [N])."""
    hit = torch.nonzero(face >= 0).squeeze(1)
    depth = torch.full(face.shape, float("inf"), device=face.device)
    bary = torch.zeros((len(face), 3), device=face.device)
    pix = hit % (height * width)
    t = face[hit]
    w = _plane_weights(edges[t], tri[t, 0, :2], pix % width, torch.div(pix, width, rounding_mode="floor"))
    d = tri[t, :, 2]
    z = _depth(w, d, perspective)
    if perspective:  # screen weights -> weights of the 3D triangle
        w = w / d * z[:, None]
    depth[hit], bary[hit] = z, w
    return depth, bary
