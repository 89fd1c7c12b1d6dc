"""UV unwrap of a full-3D mesh through xatlas (charts, then packing into one square atlas).

Why on the backend and not Blender's own unwrap: the textures are baked here (from the input image and the
predicted normal map), so the UVs must exist before the mesh leaves the backend; the CLI's GLB/OBJ then carry
them too, and the add-on only builds a material, as it does for the relief. xatlas is maintained, has wheels
for every platform the backend runs on, needs no GPU and produces non-overlapping, padded charts.

xatlas splits vertices along chart seams: the result has more vertices than the input, each a copy of one
input vertex (``source``), with the input's normals copied, so shading is unchanged across a seam.

Large meshes go to xatlas in pieces. Its chart computation grows much faster than the face count on one
mesh: on a ragged 182k-face surface (random decoder weights) it took 185 s whole and 7.5 s as pieces of
25k faces; a 722k-face one had not finished after 9 minutes whole and took 25 s in pieces; a smooth 332k-face
sphere 13.7 s whole and 4.4 s in pieces of 50k (``bench/bench_post_stages.py``). A piece is a run of
faces in Morton order of their centroids, so it is spatially compact; its border becomes a chart seam
(charts never cross it), which costs a few more charts and nothing else: the pieces share one atlas.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..errors import BadInput

MAX_FACES = 5_000_000


@dataclass(frozen=True)
class UnwrapOptions:
    """xatlas settings for 50k-500k-face meshes. The time goes into parametrizing each chart, which grows
    faster than the chart's face count: xatlas's default (charts as large as the cost allows) takes minutes
    on a dense organic mesh, so charts are capped at about ``chart_faces`` faces' worth of the mean face
    area: 5-10 times faster at 80k faces, a few hundred charts. One
    iteration of chart growing, block-aligned packing (fast), a few texels of padding so mipmaps of one
    chart never reach another, and no 90-degree turns (they can mirror a chart)."""

    resolution: int = 1024  # atlas side in texels
    padding: int = 4  # texels between charts
    max_iterations: int = 1
    max_cost: float = 4.0  # xatlas default 2: larger charts where the area cap allows
    chart_faces: int = 400
    block_align: bool = True
    piece_faces: int = 25_000  # meshes above this go to xatlas as spatially compact pieces of this size


@dataclass
class Unwrapped:
    vertices: np.ndarray  # [V', 3] float32
    faces: np.ndarray  # [F, 3] int32, the input's faces in order, re-indexed
    normals: np.ndarray | None  # [V', 3] float32
    uvs: np.ndarray  # [V', 2] float32 in [0, 1], v up
    source: np.ndarray  # [V'] int64, the input vertex each output vertex copies
    charts: int
    utilization: float
    seconds: float


def unwrap(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray | None = None,
           options: UnwrapOptions = UnwrapOptions()) -> Unwrapped:
    """UVs for a triangle mesh (vertices [V, 3], faces [F, 3]); one atlas, UVs in [0, 1] (v up)."""
    import xatlas

    v = np.ascontiguousarray(vertices, np.float32)
    f = np.asarray(faces)
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3 or not len(f):
        raise BadInput("The mesh to unwrap must have vertices [V, 3] and at least one face [F, 3].",
                       hint="Generate the mesh again.")
    if len(f) > MAX_FACES:
        raise BadInput(f"The mesh has {len(f)} faces; texturing takes at most {MAX_FACES}.",
                       hint="Set decimate_faces, or turn texture off.")
    if f.min() < 0 or f.max() >= len(v) or not np.isfinite(v).all():
        raise BadInput("The mesh to unwrap has bad face indices or non-finite vertices.",
                       hint="Generate the mesh again.")
    t0 = time.perf_counter()
    chart, pack = xatlas.ChartOptions(), xatlas.PackOptions()
    chart.max_iterations, chart.max_cost = options.max_iterations, options.max_cost
    if len(f) > options.chart_faces:
        chart.max_chart_area = _surface_area(v, f) * options.chart_faces / len(f)
    chart.fix_winding = True  # every chart keeps the faces' winding (mirrored charts would take no texture)
    pack.resolution, pack.padding = options.resolution, options.padding
    pack.bilinear, pack.blockAlign = True, options.block_align
    pack.rotate_charts = False  # its 90-degree turns can transpose a chart: mirrored, it would take no texture
    pieces = _pieces(v, f, options.piece_faces)
    atlas = xatlas.Atlas()
    for _, used, local in pieces:
        atlas.add_mesh(v[used], local)
    atlas.generate(chart, pack)
    if atlas.atlas_count != 1:  # more than one page would overlap in [0, 1]: pack again, coarser
        pack.texels_per_unit = 0.5 * float(atlas.texels_per_unit)
        pack.resolution = 0
        atlas.generate(chart, pack)
    source, new_faces, uvs = _gather(atlas, pieces, len(f))
    n = None if normals is None else np.asarray(normals, np.float32)[source]
    return Unwrapped(v[source], new_faces, n, np.clip(uvs, 0.0, 1.0), source,
                     int(atlas.chart_count), float(atlas.utilization), time.perf_counter() - t0)


Piece = tuple[np.ndarray, np.ndarray, np.ndarray]
"(face ids [P] into the mesh, vertex ids [U] it uses, its faces [P, 3] uint32 re-indexed into those vertices)"


def _pieces(vertices: np.ndarray, faces: np.ndarray, piece_faces: int) -> list[Piece]:
    """The mesh as one piece, or, above ``piece_faces`` faces, as runs of that many faces in Morton order of
    their centroids (spatially compact pieces)."""
    f = np.asarray(faces, np.int64)
    if len(f) <= piece_faces:
        return [(np.arange(len(f)), np.arange(len(vertices)), np.ascontiguousarray(f, np.uint32))]
    order = np.argsort(_morton(vertices[f].mean(axis=1)), kind="stable")
    pieces = []
    for start in range(0, len(f), piece_faces):
        ids = np.sort(order[start:start + piece_faces])
        used, local = np.unique(f[ids].reshape(-1), return_inverse=True)
        pieces.append((ids, used, np.ascontiguousarray(local.reshape(-1, 3), np.uint32)))
    return pieces


def _morton(points: np.ndarray) -> np.ndarray:
    """Morton codes [N] uint64 of points [N, 3] on a 1024^3 grid over their bounding box."""
    lo, span = points.min(axis=0), float(np.ptp(points, axis=0).max()) or 1.0
    q = np.clip((points - lo) / span * 1023.0, 0, 1023).astype(np.uint64)  # [N, 3]
    code = np.zeros(len(points), np.uint64)
    for axis in range(3):
        x = q[:, axis]
        x = (x | (x << np.uint64(16))) & np.uint64(0x30000FF)
        x = (x | (x << np.uint64(8))) & np.uint64(0x300F00F)
        x = (x | (x << np.uint64(4))) & np.uint64(0x30C30C3)
        x = (x | (x << np.uint64(2))) & np.uint64(0x9249249)
        code |= x << np.uint64(axis)
    return code


def _gather(atlas: object, pieces: list[Piece], face_count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source [V'] int64 input vertex per output vertex, faces [F, 3] int32 in the input's order, uvs [V', 2])
    from the atlas's meshes, one per piece."""
    sources, uvs = [], []
    faces = np.empty((face_count, 3), np.int32)
    offset = 0
    for k, (face_ids, used, _) in enumerate(pieces):
        mapping, piece_faces, piece_uvs = atlas[k]  # type: ignore[index]
        sources.append(used[np.asarray(mapping, np.int64)])
        faces[face_ids] = np.asarray(piece_faces, np.int64) + offset
        uvs.append(np.asarray(piece_uvs, np.float32))  # read as v up, the charts keep the faces' winding
        offset += len(sources[-1])
    return np.concatenate(sources), faces, np.concatenate(uvs)


def _surface_area(vertices: np.ndarray, faces: np.ndarray) -> float:
    tri = vertices[np.asarray(faces, np.int64)].astype(np.float64)  # [F, 3, 3]
    return float(0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum())
