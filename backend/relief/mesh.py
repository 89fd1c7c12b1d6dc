"""A closed relief mesh from a height field over a cell mask: front surface, flat back, side walls.

Frame: Blender's, +Z up, the relief faces -Y (toward the front-view camera), the bounding box centred at
the origin, the outline's long side one unit long (depth and thickness scale with it). Faces are wound
so normals point outward.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class ReliefMesh:
    vertices: np.ndarray  # [V, 3] float32
    faces: np.ndarray  # [F, 3] int32
    uvs: np.ndarray  # [V, 2] float32, front projection in [0, 1]


def manifold_cells(cells: np.ndarray, max_rounds: int = 64) -> np.ndarray:
    """Fill cells so no two active cells touch only at a corner (which would make a non-manifold vertex)."""
    c = cells.copy()
    for _ in range(max_rounds):
        a, b = c[:-1, :-1], c[:-1, 1:]
        d, e = c[1:, :-1], c[1:, 1:]
        diag = a & e & ~b & ~d  # [[1,0],[0,1]]: fill the lower-left cell
        anti = b & d & ~a & ~e  # [[0,1],[1,0]]: fill the upper-left cell
        if not (diag.any() or anti.any()):
            return c
        c[1:, :-1] |= diag
        c[:-1, :-1] |= anti
    return c


def corner_heights(heights: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Per-corner height [h+1, w+1]: the mean of the active cells around each corner."""
    hv = np.pad(np.where(cells, heights, 0.0), 1)
    cv = np.pad(cells.astype(np.float32), 1)
    total = hv[:-1, :-1] + hv[:-1, 1:] + hv[1:, :-1] + hv[1:, 1:]  # [h+1, w+1]
    count = cv[:-1, :-1] + cv[:-1, 1:] + cv[1:, :-1] + cv[1:, 1:]
    return np.where(count > 0, total / np.maximum(count, 1.0), 0.0)


def relief_mesh(heights: np.ndarray, cells: np.ndarray, thickness: float,
                check: Callable[[], None] = lambda: None) -> ReliefMesh:
    """Closed mesh over the active ``cells`` [h, w]; ``heights`` [h, w] are in world units (long side = 1).

    ``check`` is called between the vertices and the faces (a cancel point: it may raise)."""
    cells = manifold_cells(cells)
    h, w = cells.shape
    z = corner_heights(heights, cells)  # [h+1, w+1]
    padded = np.pad(cells, 1)
    used = padded[:-1, :-1] | padded[:-1, 1:] | padded[1:, :-1] | padded[1:, 1:]  # [h+1, w+1]
    n = int(used.sum())
    index = np.full(used.shape, -1, np.int64)
    index[used] = np.arange(n)
    rows, cols = np.nonzero(used)
    start, end = _outline_edges(cells, index)
    scale = 1.0 / max(h, w)
    grid = np.stack([cols, rows, z[rows, cols] / scale], 1).astype(np.float64)  # [n, 3] in cell units
    cols_s, rows_s, depth = smooth_outline(grid, start, end).T  # the rim's position and height
    x = (cols_s - w / 2.0) * scale
    up = (h / 2.0 - rows_s) * scale
    front = np.stack([x, -depth * scale, up], axis=1)
    back = np.stack([x, np.full(n, thickness), up], axis=1)
    vertices = np.concatenate([front, back])
    vertices -= (vertices.max(axis=0) + vertices.min(axis=0)) / 2.0  # centre the bounding box
    vertices /= max(np.ptp(vertices[:, 0]), np.ptp(vertices[:, 2]))  # the outline's long side is 1
    vertices = vertices.astype(np.float32)
    uv = np.stack([cols_s / w, 1.0 - rows_s / h], axis=1)  # front projection of the smoothed outline
    check()
    faces = np.concatenate([_surfaces(cells, index, n), _walls(start, end, n)]).astype(np.int32)
    return ReliefMesh(vertices, faces, np.concatenate([uv, uv]).astype(np.float32))


def _surfaces(cells: np.ndarray, index: np.ndarray, n: int) -> np.ndarray:
    i, j = np.nonzero(cells)
    a, b = index[i, j], index[i, j + 1]  # top-left, top-right corners
    d, c = index[i + 1, j], index[i + 1, j + 1]  # bottom-left, bottom-right
    front = np.concatenate([np.stack([a, d, c], 1), np.stack([a, c, b], 1)])  # counter-clockwise seen from -Y
    back = front[:, ::-1] + n
    return np.concatenate([front, back])


def smooth_outline(points: np.ndarray, start: np.ndarray, end: np.ndarray, rounds: int = 4,
                   limit: float = 0.5) -> np.ndarray:
    """Taubin-smooth the outline's corners (cell units [N, D]: position, optionally height) along the
    directed outline edges ``start -> end``, so the side walls follow the silhouette instead of the pixel
    staircase.

    Only outline vertices move, by at most ``limit`` cells per axis; the connectivity is unchanged, so the
    mesh stays closed and manifold. Taubin's lambda/mu pair (0.5, -0.53) smooths without shrinking.
    """
    nxt = np.full(len(points), -1, np.int64)
    prv = np.full(len(points), -1, np.int64)
    nxt[start], prv[end] = end, start
    on = np.nonzero((nxt >= 0) & (prv >= 0))[0]  # outline vertices with both neighbours
    out = points.copy()
    for _ in range(rounds):
        for factor in (0.5, -0.53):
            mean = 0.5 * (out[nxt[on]] + out[prv[on]])  # [B, D]
            out[on] += factor * (mean - out[on])
    return points + np.clip(out - points, -limit, limit)


def _outline_edges(cells: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every outline edge as corner indices (start, end), oriented so the wall built on it faces away from
    the cells."""
    p = np.pad(cells, 1)
    inner = p[1:-1, 1:-1]
    edges = []
    i, j = np.nonzero(inner & ~p[:-2, 1:-1])  # open above: edge top-left -> top-right
    edges.append((index[i, j], index[i, j + 1]))
    i, j = np.nonzero(inner & ~p[2:, 1:-1])  # open below: bottom-right -> bottom-left
    edges.append((index[i + 1, j + 1], index[i + 1, j]))
    i, j = np.nonzero(inner & ~p[1:-1, :-2])  # open left: bottom-left -> top-left
    edges.append((index[i + 1, j], index[i, j]))
    i, j = np.nonzero(inner & ~p[1:-1, 2:])  # open right: top-right -> bottom-right
    edges.append((index[i, j + 1], index[i + 1, j + 1]))
    return np.concatenate([e[0] for e in edges]), np.concatenate([e[1] for e in edges])


def _walls(start: np.ndarray, end: np.ndarray, n: int) -> np.ndarray:
    """Side quads along the outline edges (front corner k, back corner k + n)."""
    return np.concatenate([np.stack([start, end, end + n], 1), np.stack([start, end + n, start + n], 1)])
