"""The backend's edges for a mesh, checked before Blender gets them (numpy only, no bpy).

Blender stores a mesh's edges (``.edge_verts`` [E, 2]) and each face corner's edge (``.corner_edge``);
``mesh.update(calc_edges=True)`` derives both, and that is most of a big mesh's build time. The backend
sends them ready (``protocol.MESH_ARRAYS``: unique rows (lo, hi), lo < hi, strictly increasing, each used
by a face; ``corner_edge[f, j]`` joins faces[f, j] and faces[f, (j + 1) % 3]). ``checked_edges`` proves
all of that with a few vectorised passes and no sort, so arrays that would give Blender a wrong mesh are
refused (``ValueError``) and the builder computes its own edges instead.
"""

from __future__ import annotations

import numpy as np

INT32 = np.iinfo(np.int32)


def checked_edges(edges: np.ndarray, corner_edge: np.ndarray, faces: np.ndarray, keep: np.ndarray | None,
                  n_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """(edges [E, 2], corner_edge [F', 3]) as contiguous int32 for Blender, or ``ValueError``.

    ``faces`` [F', 3] are the triangles Blender gets: the sent ones with the degenerate rows removed,
    ``keep`` [F] bool (None: none removed) says which; ``corner_edge`` has a row per sent face."""
    pairs = _ints(edges, 2, "edges")  # [E, 2]
    corners = _ints(corner_edge, 3, "corner_edge")  # [F, 3]
    if keep is not None:
        if len(keep) != len(corners):
            raise ValueError(f"corner_edge has {len(corners)} rows for {len(keep)} faces")
        corners = np.ascontiguousarray(corners[keep])
    if len(corners) != len(faces):
        raise ValueError(f"corner_edge has {len(corners)} rows for {len(faces)} faces")
    _check_pairs(pairs, n_vertices)
    _check_corners(pairs, corners, faces)
    return pairs, corners


def _ints(value: np.ndarray, width: int, what: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu" or arr.ndim != 2 or arr.shape[1] != width:
        raise ValueError(f"{what} must be integers [n, {width}], got {arr.dtype} {arr.shape}")
    if arr.dtype != np.int32:
        if arr.size and (arr.min() < INT32.min or arr.max() > INT32.max):
            raise ValueError(f"{what} out of the int32 range")
        arr = arr.astype(np.int32)
    return np.ascontiguousarray(arr)


def _check_pairs(pairs: np.ndarray, n_vertices: int) -> None:
    """Vertex indices in range, lo < hi, rows strictly increasing (so no edge twice)."""
    if not len(pairs):
        return
    lo, hi = pairs[:, 0], pairs[:, 1]
    if lo.min() < 0 or hi.max() >= n_vertices or not (lo < hi).all():
        raise ValueError("edges must be vertex pairs (lo, hi) with 0 <= lo < hi < vertex count")
    step_lo, step_hi = np.diff(lo), np.diff(hi)  # [E - 1]
    if not ((step_lo > 0) | ((step_lo == 0) & (step_hi > 0))).all():
        raise ValueError("edges must be sorted and unique")


def _check_corners(pairs: np.ndarray, corners: np.ndarray, faces: np.ndarray) -> None:
    """Every corner's edge joins its vertex and the next corner's; every edge is some corner's."""
    if not corners.size:
        if len(pairs):
            raise ValueError("edges without faces")
        return
    index = corners.reshape(-1)  # [3F] int32
    if int(index.view(np.uint32).max()) >= len(pairs):  # one pass: negative rows read as huge
        raise ValueError("corner_edge indexes past the edges")
    index = index.astype(np.intp)  # once, instead of numpy converting it for the gather and the scatter
    have = pairs.view(np.int64).reshape(-1)[index]  # [3F]: each corner's edge row, read as one int64
    if not np.array_equal(have, _packed(faces)):
        raise ValueError("a corner's edge does not join its vertex and the next corner's")
    used = np.zeros(len(pairs), bool)
    used[index] = True
    if not used.all():
        raise ValueError("edges no face uses")


def _packed(faces: np.ndarray) -> np.ndarray:
    """[3F] int64 whose bytes are each corner's int32 pair (lo, hi) with the next corner's vertex, in
    memory order (what ``view(np.int64)`` of an edge row reads)."""
    flat = np.ascontiguousarray(faces, dtype=np.int32).reshape(-1)  # [3F]
    nxt = np.empty_like(flat)  # the next corner's vertex; C-ordered (faces[:, [1, 2, 0]] is not: 7x slower)
    nxt[:-1] = flat[1:]
    nxt[2::3] = flat[0::3]
    pair = np.empty((flat.size, 2), np.int32)  # [3F, 2]
    np.minimum(flat, nxt, out=pair[:, 0])
    np.maximum(flat, nxt, out=pair[:, 1])
    return pair.view(np.int64).reshape(-1)
