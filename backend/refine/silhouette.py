"""The silhouette term: contour vertices pulled onto the mask's outline, and the outline pulled onto them.

Why this and not a soft rasterizer: the rasterizer stays the one hard, fast one the project already
has, and the silhouette of a mesh is decided by few vertices, the ones on its contour (edges between a
face turned to the camera and one turned away, or open edges) that land on the rendered outline. A
symmetric 2D Chamfer distance between those vertices' window positions and the target mask's outline
pixels moves them where the outline should be (both in and out, which a one-sided distance transform
cannot); vertices that land outside the mask anywhere are pulled to its nearest outline pixel too. All of
it is ``torch.cdist`` on a few thousand points, differentiable in the vertex positions, CPU or GPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .laplacian import Connectivity
from .view import View

MAX_OUTLINE = 4096
"Outline pixels kept (evenly subsampled) for the Chamfer terms."


def outline(mask: torch.Tensor) -> torch.Tensor:
    """Window-pixel centres [P, 2] (u, v) of the inside pixels of ``mask`` [S, S] bool with an outside 4-neighbour."""
    inside = mask.float()[None, None]
    eroded = -F.max_pool2d(-F.pad(inside, (1, 1, 1, 1), value=0.0), 3, 1)  # 3 x 3 erosion, outside = empty
    edge = mask & (eroded[0, 0] < 0.5)
    rows, cols = torch.nonzero(edge, as_tuple=True)
    points = torch.stack([cols.float() + 0.5, rows.float() + 0.5], 1)
    if len(points) > MAX_OUTLINE:
        points = points[torch.linspace(0, len(points) - 1, MAX_OUTLINE, device=points.device).long()]
    return points


def contour_vertices(view: View, conn: Connectivity, reach: int = 2) -> torch.Tensor:
    """Ids [C] of vertices on contour edges whose window position lies within ``reach`` pixels of the
    rendered outline (contours hidden behind the surface are left out)."""
    f0, f1 = conn.edge_faces[:, 0], conn.edge_faces[:, 1]
    open_edge = f1 < 0
    turns = view.facing[f0] != view.facing[f1.clamp_min(0)]
    ids = torch.unique(conn.edges[open_edge | turns].reshape(-1))
    if len(ids) == 0:
        return ids
    drawn = view.raster.mask[0]
    size = drawn.shape[0]
    rim = torch.zeros_like(drawn)
    rim_points = outline(drawn)
    if len(rim_points):
        rim[rim_points[:, 1].long(), rim_points[:, 0].long()] = True
    near = F.max_pool2d(rim.float()[None, None], 2 * reach + 1, 1, reach)[0, 0] > 0.5
    pix = view.window[ids].detach().floor().long()
    inside = (pix >= 0).all(1) & (pix < size).all(1)
    keep = torch.zeros_like(inside)
    keep[inside] = near[pix[inside, 1], pix[inside, 0]]
    return ids[keep]


def nearest_outline(target_outline: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    """For every window pixel, the position [S, S, 2] of the nearest target outline pixel (computed once)."""
    cols, rows = torch.meshgrid(torch.arange(size, device=target_outline.device) + 0.5,
                                torch.arange(size, device=target_outline.device) + 0.5, indexing="xy")
    centres = torch.stack([cols, rows], -1).view(-1, 2)
    best = torch.cat([torch.cdist(centres[i:i + chunk], target_outline).argmin(1)
                      for i in range(0, len(centres), chunk)])
    return target_outline[best].view(size, size, 2)


def silhouette_loss(view: View, contour: torch.Tensor, wanted: torch.Tensor, target_outline: torch.Tensor,
                    nearest: torch.Tensor) -> torch.Tensor:
    """Symmetric squared Chamfer distance (in window widths) between contour vertices and the target outline,
    plus the squared distance to the outline of every vertex that lands outside the target mask.

    Vertex -> outline distances use the precomputed ``nearest`` [S, S, 2] (the nearest outline pixel of the
    pixel a vertex lands in), so they cost O(V); outline -> contour uses ``cdist`` on at most
    ``MAX_OUTLINE`` x ``MAX_OUTLINE`` points.
    """
    size = wanted.shape[0]
    zero = view.window.sum() * 0.0
    if len(target_outline) == 0:
        return zero
    pix = view.window.detach().floor().long().clamp(0, size - 1)  # [V, 2], vertices beyond the window: its edge
    goal = nearest[pix[:, 1], pix[:, 0]]  # [V, 2]
    gap = ((view.window - goal) / size).square().sum(1)  # [V]
    loss = zero
    if len(contour):
        loss = loss + gap[contour].mean()
        some = contour[torch.linspace(0, len(contour) - 1, min(len(contour), MAX_OUTLINE),
                                      device=contour.device).long()]
        loss = loss + (torch.cdist(target_outline, view.window[some]) / size).min(1).values.square().mean()
    inside = (view.window.detach() >= 0).all(1) & (view.window.detach() < size).all(1)
    out = ~(inside & wanted[pix[:, 1], pix[:, 0]])
    if bool(out.any()):
        loss = loss + gap[out].sum() / max(1, len(contour))
    return loss
