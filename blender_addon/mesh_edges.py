"""The backend's edges for a mesh, rebuilt and checked before Blender gets them (numpy only, no bpy).

Blender stores a mesh's edges (``.edge_verts`` [E, 2]) and each face corner's edge (``.corner_edge``);
``mesh.update(calc_edges=True)`` derives both, and that is most of a big mesh's build time. The backend
sends ``corner_edge`` ready (``protocol.MESH_ARRAYS``): ``corner_edge[f, j]`` is the row of the edge joining
faces[f, j] and faces[f, (j + 1) % 3] in an edge list whose rows are unique pairs (lo, hi), lo < hi,
strictly increasing by (hi, lo), each used by a face. The list does not travel: every corner knows its own
pair, so ``checked_edges`` scatters the pairs into the rows their corners name, and then proves the result
with a few vectorised passes and no sort: reading each corner's row back gives its own pair (corners that
share a row agree), and the rows, read as little-endian int64 (hi << 32 | lo), strictly increase (no row
twice, none left empty: an empty row keeps -1). Arrays that would give Blender a wrong mesh are refused
(``ValueError``) and the builder computes its own edges instead.
"""

from __future__ import annotations

import sys

import numpy as np

INT32 = np.iinfo(np.int32)
UNUSED = -1
"An edge row no corner filled (below every real pair read as int64)."


def checked_edges(corner_edge: np.ndarray, faces: np.ndarray,
                  keep: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(edges [E, 2], corner_edge [F', 3]) as contiguous int32 for Blender, or ``ValueError``.

    ``faces`` [F', 3] are the triangles Blender gets (indices already checked): the sent ones with the
    degenerate rows removed, ``keep`` [F] bool (None: none removed) says which; ``corner_edge`` has a row per
    sent face."""
    corners = _ints(corner_edge, 3, "corner_edge")  # [F, 3]
    if keep is not None:
        if len(keep) != len(corners):
            raise ValueError(f"corner_edge has {len(corners)} rows for {len(keep)} faces")
        corners = np.ascontiguousarray(corners[keep])
    if len(corners) != len(faces):
        raise ValueError(f"corner_edge has {len(corners)} rows for {len(faces)} faces")
    if not corners.size:
        return np.zeros((0, 2), np.int32), corners
    index = corners.reshape(-1)  # [3F] int32
    top = int(index.view(np.uint32).max())  # one pass: negative rows read as huge
    if top >= index.size:  # every row is some corner's: at most one per corner
        raise ValueError("corner_edge indexes past the edges")
    return _rows(index.astype(np.intp), _packed(faces), top + 1), corners


def _rows(index: np.ndarray, packed: np.ndarray, n_edges: int) -> np.ndarray:
    """Each corner's pair (as int64) into its row; the rows [E, 2] int32 once they check out."""
    rows = np.full(n_edges, UNUSED, np.int64)  # [E]
    rows[index] = packed  # corners sharing a row: any one writes; the read-back below proves they agree
    if not np.array_equal(rows[index], packed):
        raise ValueError("a corner's edge does not join its vertex and the next corner's")
    if sys.byteorder != "little" or rows[0] == UNUSED or not (rows[1:] > rows[:-1]).all():
        raise ValueError("edges must be unique, sorted by (hi, lo), each used by a face")
    return rows.view(np.int32).reshape(-1, 2)


def _ints(value: np.ndarray, width: int, what: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu" or arr.ndim != 2 or arr.shape[1] != width:
        raise ValueError(f"{what} must be integers [n, {width}], got {arr.dtype} {arr.shape}")
    if arr.dtype != np.int32:
        if arr.size and (arr.min() < INT32.min or arr.max() > INT32.max):
            raise ValueError(f"{what} out of the int32 range")
        arr = arr.astype(np.int32)
    return np.ascontiguousarray(arr)


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
