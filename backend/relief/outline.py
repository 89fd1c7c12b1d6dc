"""Tidying the marching-squares outline so the side walls shade smoothly.

Marching squares puts an outline vertex on every grid edge the outline crosses; where the outline passes
close to a grid sample, two crossings land a few hundredths of a cell apart, and the wall face between
them takes its direction from their tiny interpolation errors (tens of degrees off). ``merge_short_edges``
collapses such outline edges; ``smooth_outline`` then evens out what noise is left along the outline,
across the outline, moving no vertex by more than a quarter of a cell. ``smooth_along_outline`` evens out
a value (the outline vertices' heights) along it the same way.
"""

from __future__ import annotations

import numpy as np

MIN_EDGE = 0.3
"Outline edges shorter than this many cells are collapsed to their midpoint."
SMOOTH_ROUNDS = 10
SMOOTH_LIMIT = 0.25
"No outline vertex moves by more than this many cells while smoothing."


def merge_short_edges(points: np.ndarray, tris: np.ndarray, start: np.ndarray, end: np.ndarray,
                      min_length: float = MIN_EDGE) -> tuple[np.ndarray, np.ndarray]:
    """Collapse border edges ``start -> end`` of the surface (points [V, D], first two columns in cells;
    tris [T, 3]) shorter than ``min_length`` into their midpoints; returns (points, tris) compacted.

    Only edges whose ends belong to no other short edge are collapsed, so each collapse removes one
    triangle and keeps the surface a manifold (a marching-squares border edge lies in one square, and its
    two ends share no neighbour but that triangle's third corner).
    """
    length = np.linalg.norm(points[start, :2] - points[end, :2], axis=1)
    s, e = start[length < min_length], end[length < min_length]
    uses = np.bincount(np.concatenate([s, e]), minlength=len(points))
    alone = (uses[s] == 1) & (uses[e] == 1)
    s, e = s[alone], e[alone]
    points = points.copy()
    points[s] = 0.5 * (points[s] + points[e])
    target = np.arange(len(points))
    target[e] = s
    t = target[tris]
    t = t[(t[:, 0] != t[:, 1]) & (t[:, 1] != t[:, 2]) & (t[:, 0] != t[:, 2])]
    used, inverse = np.unique(t.reshape(-1), return_inverse=True)
    return points[used], inverse.reshape(-1, 3)


def smooth_outline(points: np.ndarray, start: np.ndarray, end: np.ndarray, rounds: int = SMOOTH_ROUNDS,
                   limit: float = SMOOTH_LIMIT) -> np.ndarray:
    """Taubin-smooth (lambda 0.5, mu -0.53: no shrinking) the outline vertices of ``points`` [V, 2] along
    their directed edges ``start -> end``, across the outline only (the spacing along it stays, so no
    triangle next to it folds over); every other vertex stays, and none moves over ``limit`` cells."""
    nxt = np.full(len(points), -1, np.int64)
    prv = np.full(len(points), -1, np.int64)
    nxt[start], prv[end] = end, start
    on = np.flatnonzero((nxt >= 0) & (prv >= 0))  # [B] outline vertices
    out = points.astype(np.float64, copy=True)
    for _ in range(rounds):
        for factor in (0.5, -0.53):
            tangent = out[nxt[on]] - out[prv[on]]  # [B, 2]
            normal = np.stack([-tangent[:, 1], tangent[:, 0]], 1)
            normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
            step = factor * (0.5 * (out[nxt[on]] + out[prv[on]]) - out[on])
            out[on] += (step * normal).sum(axis=1, keepdims=True) * normal
    move = out - points
    length = np.linalg.norm(move, axis=1, keepdims=True)
    return points + move * np.minimum(1.0, limit / np.maximum(length, 1e-12))


def smooth_along_outline(values: np.ndarray, start: np.ndarray, end: np.ndarray,
                         rounds: int = SMOOTH_ROUNDS) -> np.ndarray:
    """Taubin-smooth (lambda 0.5, mu -0.53) ``values`` [V] of the outline vertices along their directed
    edges ``start -> end``; every other vertex keeps its value. The heights of neighbouring outline
    vertices come from different grid samples and crossings at different distances from them: this takes
    out their zigzag (dashes along the rim) and keeps the run of the surface's height along it."""
    nxt = np.full(len(values), -1, np.int64)
    prv = np.full(len(values), -1, np.int64)
    nxt[start], prv[end] = end, start
    on = np.flatnonzero((nxt >= 0) & (prv >= 0))  # [B] outline vertices
    out = np.asarray(values, np.float64).copy()
    for _ in range(rounds):
        for factor in (0.5, -0.53):
            out[on] += factor * (0.5 * (out[nxt[on]] + out[prv[on]]) - out[on])
    return out
