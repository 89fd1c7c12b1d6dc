"""A triangle mesh's unique edges and each corner's edge, as Blender stores them (numpy; Numba or SciPy).

Blender keeps a mesh's edges as ``.edge_verts`` [E, 2] and, per face corner, ``.corner_edge``: the edge from
that corner's vertex to the next corner's. ``mesh.update(calc_edges=True)`` derives both with a hash
table and is most of the add-on's mesh-build time; handed over ready, they cost Blender a copy.

``mesh_edges`` finds them without a global sort. Each corner's edge is keyed by its lower vertex ``lo`` and
higher ``hi``; the edges come out sorted by (hi, lo), which is the order of their (lo, hi) int32 pairs read
as little-endian int64 (what lets the add-on check them in one pass). Three ways, fastest first:

- Numba (``edges_kernel``, for meshes of ``COMPILED_MIN_CORNERS`` corners or more): a counting sort of the
  corners by ``hi``, a sort of each (short) bucket by ``lo`` and a numbering walk, compiled. 1.3 M faces:
  about 0.03 s on one core.
- SciPy (a backend requirement): the keys become a sparse V x V matrix with rows ``hi``. SciPy's COO -> CSR
  conversion is a bucket sort by row and a sort of each (short) row, in C, and the duplicates (an edge's
  two half-edges) merge; the CSR's entries are then the sorted unique edges, and looking each key up in its
  row (binary search, in C) gives its edge. 1.3 M faces: about 0.07 s, a ninth of ``np.unique``'s.
- Neither (the Blender venv of the benches and tests): the edges of one ``hi`` go into per-vertex slots,
  one slot column per round: in round k every unplaced key writes its ``lo`` into column k at row ``hi``
  (any one writer wins), and every key that then reads its own ``lo`` there is placed (equal keys are placed
  together). A round places one edge per vertex, so a mesh takes as many rounds as its largest number of
  edges to lower-numbered vertices (3 on a grid, about 6 to 10 on marching-cubes output); every access is
  indexed by vertex and each round has fewer keys. The slots are then ranked per vertex, which makes the
  edges the sorted unique keys: ``np.unique``'s answer at a third of its time. A mesh needing more than
  ``MAX_ROUNDS`` rounds (a fan around one vertex) takes ``np.unique``.

The contract (``protocol.MESH_ARRAYS``): ``corner_edge`` [F, 3] the row of corner (f, j)'s edge, -1 for the
rows of degenerate triangles (a vertex twice), which the add-on drops; the edge rows themselves are not
sent: they are (lo, hi) with lo < hi, strictly increasing by (hi, lo), every one used by a corner, so the
add-on derives them from the faces and ``corner_edge`` alone (``blender_addon/mesh_edges.py``).
"""

from __future__ import annotations

import sys

import numpy as np

MAX_ROUNDS = 32
"More rounds than this (a vertex with more edges to lower-numbered vertices) fall back to ``np.unique``."
COMPILED_MIN_CORNERS = 300_000
"Meshes with fewer corners (100 k faces) skip the compiled pass: SciPy takes them in milliseconds."


def mesh_edges(faces: np.ndarray, n_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """Faces [F, 3] (indices < ``n_vertices``) -> (edges [E, 2] int32 unique (lo, hi) sorted by (hi, lo),
    corner_edge [F, 3] int32: corner (f, j)'s edge joins faces[f, j] and faces[f, (j + 1) % 3]; -1 on
    degenerate faces)."""
    tris = np.ascontiguousarray(faces, dtype=np.int32).reshape(-1, 3)  # [F, 3]
    found = _run_compiled(tris, n_vertices) if tris.size >= COMPILED_MIN_CORNERS else None
    if found is not None:
        return found
    if tris.size and (tris.min() < 0 or tris.max() >= n_vertices):
        raise ValueError("mesh faces index past the vertex array")
    flat = tris.reshape(-1)  # [3F]
    nxt = next_corners(flat)  # [3F]
    same = flat == nxt  # [3F] a corner whose edge joins a vertex to itself
    bad = (same[0::3] | same[1::3] | same[2::3]) if same.any() else np.zeros(len(tris), bool)  # [F]
    if bad.any():
        flat, nxt = flat.reshape(-1, 3)[~bad].reshape(-1), nxt.reshape(-1, 3)[~bad].reshape(-1)  # [3F']
    lo, hi = np.minimum(flat, nxt), np.maximum(flat, nxt)  # [3F']
    found = _sparse(lo, hi, n_vertices) if _has_scipy() else _slotted(lo, hi, n_vertices)
    edges, corner = found if found is not None else unique_edges(lo, hi, n_vertices)
    if not bad.any():
        return edges, corner.reshape(-1, 3)
    out = np.full((len(bad), 3), -1, np.int32)  # [F, 3]
    out[~bad] = corner.reshape(-1, 3)
    return edges, out


def next_corners(flat: np.ndarray) -> np.ndarray:
    """Corner vertices [3F] (triangles in a row) -> each corner's next corner's vertex [3F], C-ordered.

    Two slice copies; ``faces[:, [1, 2, 0]]`` is as quick itself but numpy lays its result out column by
    column, and every elementwise pass over it then runs about 7x slower (most of this module's time)."""
    nxt = np.empty_like(flat)
    nxt[:-1] = flat[1:]
    nxt[2::3] = flat[0::3]
    return nxt


def unique_edges(lo: np.ndarray, hi: np.ndarray, n_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference: sorted unique keys hi * V + lo and each key's row (an int64 sort)."""
    keys = hi.astype(np.int64) * max(1, n_vertices) + lo  # [N]
    unique, inverse = np.unique(keys, return_inverse=True)
    edges = np.stack([unique % max(1, n_vertices), unique // max(1, n_vertices)], axis=1)  # [E, 2] (lo, hi)
    return edges.astype(np.int32), inverse.reshape(-1).astype(np.int32)


def _compiled():  # noqa: ANN202 - the kernel, or None
    """``edges_kernel.bucket_edges`` when Numba is installed (and the pairs it packs read back as (lo, hi):
    a little-endian machine), else None."""
    if sys.byteorder != "little":
        return None
    try:
        from .edges_kernel import bucket_edges
    except ImportError:
        return None
    except Exception as exc:  # noqa: BLE001 - a Numba that fails to import otherwise: SciPy's path then
        if not _broken:
            _broken.append(str(exc))
            print(f"[hi3dgen] Numba did not load ({exc}); SciPy makes the edges", file=sys.stderr, flush=True)
        return None
    return bucket_edges


def warm_compiled() -> None:
    """Load the compiled pass (compiling it when its cache is missing) on a single triangle; no-op without
    Numba. A serving backend calls it in the background so that its first big mesh does not wait."""
    _run_compiled(np.array([[0, 1, 2]], np.int32), 3)


_broken: list[str] = []
"Why the compiled pass failed once (then it is not tried again in this process)."


def _run_compiled(tris: np.ndarray, n_vertices: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The compiled pass's (edges [E, 2], corner_edge [F, 3]); None without Numba or when it fails to
    compile (said once on stderr; the other paths take over). Indices out of range raise ``ValueError``."""
    compiled = None if _broken else _compiled()
    if compiled is None:
        return None
    try:  # degenerate faces included: their corners get -1
        slot, corner = np.empty(tris.size, np.int64), np.empty(tris.size, np.int32)  # [3F] each
        n = compiled(tris, n_vertices, np.empty(n_vertices + 1, np.int32), slot, corner)
        packed = slot[:n]  # [E] int64: the pairs
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - a Numba/LLVM that cannot compile here
        _broken.append(str(exc))
        print(f"[hi3dgen] the compiled edge pass failed ({exc}); SciPy's takes over", file=sys.stderr, flush=True)
        return None
    return packed.view(np.int32).reshape(-1, 2), corner.reshape(-1, 3)


def _has_scipy() -> bool:
    try:
        import scipy.sparse  # noqa: F401
    except ImportError:
        return False
    return True


def _sparse(lo: np.ndarray, hi: np.ndarray, n_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """The keys as a sparse matrix's entries (module doc): sorted unique edges, each key's edge."""
    from scipy import sparse

    if not lo.size:
        return np.zeros((0, 2), np.int32), np.zeros(0, np.int32)
    ones = np.ones(lo.size, np.int32)  # [N]; summed per edge, then replaced by the edge rows
    matrix = sparse.csr_array((ones, (hi, lo)), shape=(n_vertices, n_vertices))  # rows hi: sorted (hi, lo)
    matrix.sum_duplicates()  # canonical already after the conversion; a no-op then
    matrix.data = np.arange(matrix.nnz, dtype=np.int32)
    rows = np.repeat(np.arange(n_vertices, dtype=np.int32), np.diff(matrix.indptr))  # [E] hi
    edges = np.stack([matrix.indices.astype(np.int32), rows], axis=1)  # [E, 2] (lo, hi)
    corner = np.asarray(matrix[hi, lo], dtype=np.int32).reshape(-1)  # [N]
    return edges, corner


def _slotted(lo: np.ndarray, hi: np.ndarray, n_vertices: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The per-vertex slot rounds (module doc): rows ``hi``, slots ``lo``; None if a vertex needs more
    than ``MAX_ROUNDS``."""
    found = _slot_rounds(hi, lo, n_vertices)
    if found is None:
        return None
    edges, corner = found  # edges (hi, lo)
    return np.ascontiguousarray(edges[:, ::-1]), corner


def _slot_rounds(lo: np.ndarray, hi: np.ndarray, n_vertices: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Keys (row ``lo``, slot ``hi``) -> rows (lo, hi) sorted, each key's row; None past ``MAX_ROUNDS``."""
    columns: list[np.ndarray] = []  # K x [V]: hi per vertex and round, -1 if empty
    placed: list[tuple[np.ndarray | None, np.ndarray]] = []  # per round: keys placed (None: all left), their lo
    pending: np.ndarray | None = None  # None: every key (round 0)
    p_lo, p_hi = lo, hi
    while p_lo.size:
        if len(columns) == MAX_ROUNDS:
            return None
        column = np.full(n_vertices, -1, np.int32)  # [V]
        column[p_lo] = p_hi
        left = column[p_lo] != p_hi  # [P] still unplaced
        columns.append(column)
        if not left.any():
            placed.append((pending, p_lo))
            break
        here = ~left
        placed.append((np.flatnonzero(here) if pending is None else pending[here], p_lo[here]))
        pending = np.flatnonzero(left) if pending is None else pending[left]
        p_lo, p_hi = lo[pending], hi[pending]
    return _numbered(columns, placed, lo.size, n_vertices)


def _numbered(columns: list[np.ndarray], placed: list[tuple[np.ndarray | None, np.ndarray]], n_keys: int,
              n_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """Slot columns K x [V] (hi, -1 empty) and the keys each round placed -> sorted edges [E, 2] and each
    key's edge row [N]."""
    big = np.iinfo(np.int32).max
    keys = [np.where(c < 0, big, c) for c in columns]  # K x [V], empty slots sort last
    count = np.zeros(n_vertices, np.int32)  # [V] edges per lower vertex
    for c in columns:
        count += c >= 0
    start = (np.cumsum(count) - count).astype(np.int32)  # [V] first edge row of each lower vertex
    edges = np.empty((int(count.sum()), 2), np.int32)
    corner = np.empty(n_keys, np.int32)  # [N]
    for k, (key, (which, where)) in enumerate(zip(keys, placed)):
        row = start.copy()  # [V] the edge row of slot k: start + slots of the vertex with a smaller hi
        for j, other in enumerate(keys):
            if j != k:
                row += other < key
        here = np.flatnonzero(columns[k] >= 0)
        edges[row[here]] = np.stack([here, columns[k][here]], axis=1)
        if which is None:
            corner[:] = row[where]
        else:
            corner[which] = row[where]
    return edges, corner
