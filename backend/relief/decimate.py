"""Quadric decimation of an open surface whose border stays exactly where it is.

The relief decimates its front and its flat back this way, then rebuilds the side walls between the kept
border vertices: the silhouette keeps its full sub-cell outline, where a decimation of the closed mesh cuts
corners of it (several cells at a 98 % reduction, bench/bench_relief_geometry.py).
"""

from __future__ import annotations

import numpy as np


def simplify_keeping_border(points: np.ndarray, faces: np.ndarray, target_faces: int,
                            border: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decimate (vertices [V, 3], faces [F, 3]) to about ``target_faces`` faces with fast-simplification,
    never collapsing an edge that touches a border vertex.

    Returns the new vertices [V', 3] float64, faces [F', 3] int64 and the new index [B] of each of the
    ``border`` vertices (original indices), which keep their positions bit for bit.
    """
    import fast_simplification

    v, f = fast_simplification.simplify(np.asarray(points, np.float64), np.asarray(faces, np.int64),
                                        target_count=max(int(target_faces), 1), preserve_border=True)
    v, f = without_folds(np.asarray(v, np.float64), np.asarray(f, np.int64))
    return v, f, _find_rows(v, np.asarray(points, np.float64)[border])


def simplify_closed(points: np.ndarray, faces: np.ndarray, target_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Decimate a closed mesh to about ``target_faces`` faces (every edge may collapse; it stays closed)."""
    import fast_simplification

    v, f = fast_simplification.simplify(np.asarray(points, np.float64), np.asarray(faces, np.int64),
                                        target_count=max(int(target_faces), 1))
    return without_folds(np.asarray(v, np.float64), np.asarray(f, np.int64))


def without_folds(points: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop every face whose three vertices another face also has (the decimation now and then leaves a
    face and its reverse folded onto each other: an edge with four faces), and unused vertices."""
    corners = np.sort(faces, axis=1)  # [F, 3] the vertex set of each face
    order = np.lexsort(corners.T[::-1])
    same = (corners[order[1:]] == corners[order[:-1]]).all(axis=1)  # [F - 1] a face equal to the next
    twin = np.zeros(len(faces), bool)
    twin[order[1:][same]] = twin[order[:-1][same]] = True
    if not twin.any():
        return points, faces
    faces = faces[~twin]
    used, index = np.unique(faces.reshape(-1), return_inverse=True)
    return points[used], index.reshape(-1, 3)


def is_closed_manifold(faces: np.ndarray) -> bool:
    """Every directed edge once and its reverse once: closed, manifold at the edges, consistently wound.

    Then the sorted directed edges have no repeats and equal the sorted reversed edges (two sorts)."""
    if len(faces) == 0:
        return False
    a, b = faces.reshape(-1).astype(np.int64), np.roll(faces, -1, axis=1).reshape(-1).astype(np.int64)
    n = int(faces.max(initial=0)) + 1
    forward, backward = np.sort(a * n + b), np.sort(b * n + a)
    return bool((np.diff(forward) > 0).all() and np.array_equal(forward, backward))


def _find_rows(points: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Index [W] of each row of ``wanted`` in ``points`` (each is there, bit for bit)."""
    at = {row.tobytes(): k for k, row in enumerate(points)}
    try:
        return np.array([at[row.tobytes()] for row in wanted], np.int64)
    except KeyError:
        raise RuntimeError("the decimation moved a border vertex it was told to keep") from None
