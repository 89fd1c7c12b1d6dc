"""A closed relief mesh from a height field over a soft mask: front surface, flat back, side walls.

The outline is the 0.5 iso-line of the soft (antialiased) mask, found by marching squares over the grid
samples: outline vertices sit on the grid edges at sub-cell positions, so the side walls follow the
silhouette itself instead of a pixel staircase, and neighbouring wall faces turn by small angles. Each
square of four samples contributes the part of it inside the outline, a convex polygon (its vertices lie
in order on the square's border), fanned into triangles; crossings are shared by the two squares of their
edge, so the front surface is a manifold whose border is the outline, and the mesh is closed by a mirrored
back and a wall of quads along that border.

Frame: Blender's, +Z up, the relief faces -Y (toward the front-view camera), the bounding box centred at
the origin, the outline's long side one unit long (depth and thickness scale with it). Faces are wound
so normals point outward.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .decimate import is_closed_manifold, simplify_closed, simplify_keeping_border
from .outline import merge_short_edges, smooth_along_outline, smooth_outline

LEVEL = 0.5
"The outline is where the soft mask crosses this value."
EDGE_CLAMP = 0.02
"A crossing keeps at least this fraction of its grid edge from either sample (no zero-length edges)."
RIM_FLOOR = 0.5
"An outline vertex's height, continuing the slope, stays above minus this share of the back's thickness."

# A square's border in order, counter-clockwise seen from the viewer: the corners top-left, bottom-left,
# bottom-right, top-right (TL, BL, BR, TR) with the edge after each (left, bottom, right, top) between them.
_CORNER_SLOTS = (0, 2, 4, 6)
_EDGE_SLOTS = (1, 3, 5, 7)
_SEPARATED = {0b0101: ((7, 0, 1), (3, 4, 5)), 0b1010: ((1, 2, 3), (5, 6, 7))}
"Saddles whose centre is outside: two corner triangles (TL+BR inside, or BL+TR inside)."


@dataclass
class ReliefMesh:
    vertices: np.ndarray  # [V, 3] float32
    faces: np.ndarray  # [F, 3] int32
    uvs: np.ndarray  # [V, 2] float32, front projection in [0, 1]


def relief_mesh(heights: np.ndarray, field: np.ndarray, thickness: float,
                check: Callable[[], None] = lambda: None, target_faces: int = 0) -> ReliefMesh:
    """Closed mesh over the samples [h, w] of the soft mask ``field`` (in [0, 1]; a bool mask works, with a
    coarser outline) that are at least ``LEVEL``; ``heights`` [h, w] are in world units (long side = 1).

    Sample (i, j) stands for the grid cell's centre. ``target_faces`` > 0 decimates to about that many
    faces, the outline kept exactly (``_decimated``). ``check`` is called between the vertices and the
    faces (a cancel point: it may raise)."""
    h, w = field.shape
    f = _nudged(np.pad(np.asarray(field, np.float64), 1))  # [h+2, w+2]: the border is outside
    z = np.pad(np.where(f[1:-1, 1:-1] >= LEVEL, heights, 0.0), 1)
    rows, cols, depth, slots = _vertices(f, z, -RIM_FLOOR * thickness)
    tris = _front_triangles(f, slots)
    grid, tris = merge_short_edges(np.stack([rows, cols, depth], 1), tris, *_border(tris, len(rows)))
    start, end = _border(tris, len(grid))
    (rows, cols), depth = smooth_outline(grid[:, :2], start, end).T, smooth_along_outline(grid[:, 2], start, end)
    n = len(rows)
    scale = 1.0 / max(h, w)
    x = (cols - 0.5 - w / 2.0) * scale  # sample (i, j) of the padded grid is cell (i - 1, j - 1)'s centre
    up = (h / 2.0 - (rows - 0.5)) * scale
    front = np.stack([x, -depth, up], axis=1)
    back = np.stack([x, np.full(n, thickness), up], axis=1)
    both = np.concatenate([front, back])
    offset = (both.max(axis=0) + both.min(axis=0)) / 2.0  # centre the bounding box
    size = max(np.ptp(both[:, 0]), np.ptp(both[:, 2]))  # the outline's long side becomes 1
    front, back = (front - offset) / size, (back - offset) / size
    uv_of = _front_projection(front, cols, rows, h, w)
    check()
    vertices = np.concatenate([front, back])
    faces = np.concatenate([tris, tris[:, ::-1] + n, _walls(start, end, start + n, end + n)])
    if 0 < target_faces < len(faces):
        try:
            smaller = _decimated(front, back, tris, start, end, target_faces)
        except RuntimeError:  # an outline vertex moved after all
            smaller = vertices, faces[:0]
        if not is_closed_manifold(smaller[1]):  # a rare fold the repair missed: decimate the closed mesh
            smaller = simplify_closed(vertices, faces, target_faces)
        if is_closed_manifold(smaller[1]):  # else keep the full mesh: valid beats small
            vertices, faces = smaller
    uv = np.clip(uv_of(vertices), 0.0, 1.0)
    return ReliefMesh(vertices.astype(np.float32), faces.astype(np.int32), uv.astype(np.float32))


def _front_projection(front: np.ndarray, cols: np.ndarray, rows: np.ndarray, h: int,
                      w: int) -> Callable[[np.ndarray], np.ndarray]:
    """The UV map, (col, row) over the grid to [0, 1], as an affine function of a vertex's (x, z)."""
    uv = np.stack([(cols - 0.5) / w, 1.0 - (rows - 0.5) / h], axis=1)  # [n, 2]
    xz1 = np.column_stack([front[:, 0], front[:, 2], np.ones(len(front))])
    affine, *_ = np.linalg.lstsq(xz1, uv, rcond=None)  # [3, 2], exact: positions are affine in (col, row)
    return lambda v: np.column_stack([v[:, 0], v[:, 2], np.ones(len(v))]) @ affine


def _decimated(front: np.ndarray, back: np.ndarray, tris: np.ndarray, start: np.ndarray, end: np.ndarray,
               target_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """The front and the flat back decimated as open surfaces with their border (the outline) kept, and
    the walls rebuilt between the kept border vertices. The back shrinks to about a strip along the
    outline; the front gets the rest of the budget. A budget below what the outline alone takes (its
    walls and strips) decimates the closed mesh further, outline included."""
    border = np.unique(start)
    back_v, back_f, back_id = simplify_keeping_border(back, tris[:, ::-1], 1, border)
    budget = target_faces - 2 * len(start) - len(back_f)
    if budget < len(tris):
        front_v, front_f, front_id = simplify_keeping_border(front, tris, budget, border)
    else:
        front_v, front_f, front_id = front, tris, border
    remap = np.full(len(front), -1, np.int64)
    remap[border] = np.arange(len(border))
    a, b, nf = remap[start], remap[end], len(front_v)
    walls = _walls(front_id[a], front_id[b], back_id[a] + nf, back_id[b] + nf)
    vertices = np.concatenate([front_v, back_v])
    faces = np.concatenate([front_f, back_f + nf, walls])
    if len(faces) > target_faces:  # the outline alone needs more: let the decimation shorten it too
        vertices, faces = simplify_closed(vertices, faces, target_faces)
    return vertices, faces


def _nudged(f: np.ndarray) -> np.ndarray:
    """Samples exactly at the level moved just inside, so every crossing lies strictly between samples."""
    return np.where(f == LEVEL, LEVEL + 1e-6, f)


def _vertices(f: np.ndarray, z: np.ndarray,
              floor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Front vertices: the inside samples, then a crossing on every grid edge whose ends differ.

    Returns their (row, col) in padded grid units [V], height [V] (a crossing's continues the surface's
    slope, ``_crossing_height``) and, per square [h+1, w+1, 8], the vertex index of each border slot (-1
    where there is none).
    """
    inside = f >= LEVEL
    H, W = f.shape
    corner = np.full((H, W), -1, np.int64)
    r_in, c_in = np.nonzero(inside)
    corner[r_in, c_in] = np.arange(len(r_in))
    parts = [(r_in.astype(np.float64), c_in.astype(np.float64), z[r_in, c_in])]
    count = len(r_in)
    edge_ids = []
    for axis in (1, 0):  # along rows (horizontal edges), then along columns (vertical edges)
        a = f[:, :-1] if axis == 1 else f[:-1]
        b = f[:, 1:] if axis == 1 else f[1:]
        cut = (a >= LEVEL) != (b >= LEVEL)
        ids = np.full(cut.shape, -1, np.int64)
        r, c = np.nonzero(cut)
        ids[r, c] = count + np.arange(len(r))
        count += len(r)
        t = np.clip(_crossing(f, r, c, axis), EDGE_CLAMP, 1.0 - EDGE_CLAMP)
        height = _crossing_height(f, z, r, c, axis, t, floor)
        parts.append((r + (t if axis == 0 else 0.0), c + (t if axis == 1 else 0.0), height))
        edge_ids.append(ids)
    horizontal, vertical = edge_ids  # [H, W-1], [H-1, W]
    slots = np.stack([corner[:-1, :-1], vertical[:, :-1], corner[1:, :-1], horizontal[1:],
                      corner[1:, 1:], vertical[:, 1:], corner[:-1, 1:], horizontal[:-1]], axis=-1)
    rows, cols, depth = (np.concatenate([p[k] for p in parts]) for k in range(3))
    return rows, cols, depth, slots


def _crossing_height(f: np.ndarray, z: np.ndarray, r: np.ndarray, c: np.ndarray, axis: int, t: np.ndarray,
                     floor: float) -> np.ndarray:
    """The height [N] of the crossings at ``t`` on the grid edges from (r, c) along ``axis``: the inside
    sample's, continued by the slope from the next sample inward on the same grid line (linear
    extrapolation over the distance to the crossing), not below ``floor``.

    Copying the inside sample's height instead would make the outermost ring of front triangles a flat
    terrace around a sloped surface (the heights fall steeply toward the outline): a light or dark band
    along the rim, broken into dashes where Auto Smooth's 30-degree limit cuts it off the slope or not.
    Where the next sample inward is outside too (a part one cell wide) the slope is unknown: flat."""
    dr, dc = (0, 1) if axis == 1 else (1, 0)
    h, w = f.shape
    first_in = f[r, c] >= LEVEL
    inner_r = np.where(first_in, r - dr, r + 2 * dr).clip(0, h - 1)  # one step further inside
    inner_c = np.where(first_in, c - dc, c + 2 * dc).clip(0, w - 1)
    in_r, in_c = np.where(first_in, r, r + dr), np.where(first_in, c, c + dc)
    distance = np.where(first_in, t, 1.0 - t)  # from the inside sample to the crossing, in cells
    z_in, z_inner = z[in_r, in_c], z[inner_r, inner_c]
    slope = np.where(f[inner_r, inner_c] >= LEVEL, z_in - z_inner, 0.0)  # height change per cell outward
    return np.maximum(z_in + distance * slope, np.minimum(floor, z_in))


def _crossing(f: np.ndarray, r: np.ndarray, c: np.ndarray, axis: int, steps: int = 12) -> np.ndarray:
    """Where [N] between sample (r, c) and the next one along ``axis`` the field crosses ``LEVEL``: the
    root of the Catmull-Rom cubic through the four samples on that line (bisection; the two middle ones
    bracket it), much closer to a smooth field's true crossing than the linear interpolation's."""
    dr, dc = (0, 1) if axis == 1 else (1, 0)
    h, w = f.shape

    def at(k: int) -> np.ndarray:
        return f[np.clip(r + k * dr, 0, h - 1), np.clip(c + k * dc, 0, w - 1)]

    p0, p1, p2, p3 = at(-1), at(0), at(1), at(2)
    c1, c2, c3 = 0.5 * (p2 - p0), p0 - 2.5 * p1 + 2.0 * p2 - 0.5 * p3, 0.5 * (p3 - p0) + 1.5 * (p1 - p2)
    lo, hi = np.zeros(len(r)), np.ones(len(r))
    rising = p2 > p1
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        below = p1 + mid * (c1 + mid * (c2 + mid * c3)) < LEVEL
        go_up = below == rising  # the crossing lies above mid
        lo, hi = np.where(go_up, mid, lo), np.where(go_up, hi, mid)
    return 0.5 * (lo + hi)


def _front_triangles(f: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """Triangles [T, 3] of every square's inside polygon, counter-clockwise seen from the viewer."""
    inside = f >= LEVEL
    code = (inside[:-1, :-1] * 1 + inside[1:, :-1] * 2 + inside[1:, 1:] * 4 + inside[:-1, 1:] * 8)
    centre = (f[:-1, :-1] + f[1:, :-1] + f[1:, 1:] + f[:-1, 1:]) / 4.0 >= LEVEL
    out = []
    for case in range(1, 16):
        chosen = code == case
        if case in _SEPARATED:  # a saddle: joined through the centre, or two separate corners
            out.append(_fan(slots[chosen & centre], case))
            for tri in _SEPARATED[case]:
                out.append(slots[chosen & ~centre][:, tri])
        else:
            out.append(_fan(slots[chosen], case))
    return np.concatenate(out)


def _fan(square_slots: np.ndarray, case: int) -> np.ndarray:
    """Fan triangles [N * (k - 2), 3] of the convex polygons of ``case`` (``square_slots`` [N, 8])."""
    bits = [(case >> k) & 1 for k in range(4)]
    order = []
    for k in range(4):
        if bits[k]:
            order.append(_CORNER_SLOTS[k])
        if bits[k] != bits[(k + 1) % 4]:
            order.append(_EDGE_SLOTS[k])
    poly = square_slots[:, order]  # [N, k]
    return np.concatenate([poly[:, [0, m, m + 1]] for m in range(1, len(order) - 1)])


def _border(front: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The front surface's border edges (start, end), each directed so that a wall built on it faces
    outward: the reverse of the front triangle's edge it lies on."""
    first = front.reshape(-1)
    second = np.roll(front, -1, axis=1).reshape(-1)  # [3T] every directed edge of the front triangles
    key = np.minimum(first, second) * (n + 1) + np.maximum(first, second)
    _, once, counts = np.unique(key, return_index=True, return_counts=True)
    border = once[counts == 1]  # edges only one front triangle has
    return second[border], first[border]


def _walls(front_a: np.ndarray, front_b: np.ndarray, back_a: np.ndarray, back_b: np.ndarray) -> np.ndarray:
    """Side quads (two triangles each) on the border edges a -> b, given front and back vertex indices."""
    return np.concatenate([np.stack([front_a, front_b, back_b], 1), np.stack([front_a, back_b, back_a], 1)])
