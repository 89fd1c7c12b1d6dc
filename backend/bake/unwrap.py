"""UV unwrap of a full-3D mesh through xatlas (charts, then packing into one square atlas).

Why on the backend and not Blender's own unwrap: the textures are baked here (from the input image and the
predicted normal map), so the UVs must exist before the mesh leaves the backend; the CLI's GLB/OBJ then carry
them too, and the add-on only builds a material, as it does for the relief. xatlas is maintained, has wheels
for every platform the backend runs on, needs no GPU and produces non-overlapping, padded charts.

xatlas splits vertices along chart seams: the result has more vertices than the input, each a copy of one
input vertex (``source``), with the input's normals copied, so shading is unchanged across a seam.
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
    atlas = xatlas.Atlas()
    atlas.add_mesh(v, np.ascontiguousarray(f, np.uint32))
    atlas.generate(chart, pack)
    if atlas.atlas_count != 1:  # more than one page would overlap in [0, 1]: pack again, coarser
        pack.texels_per_unit = 0.5 * float(atlas.texels_per_unit)
        pack.resolution = 0
        atlas.generate(chart, pack)
    source, new_faces, uvs = atlas[0]
    source = np.asarray(source, np.int64)
    uvs = np.asarray(uvs, np.float32)  # read as v up, the charts keep the faces' counter-clockwise winding
    n = None if normals is None else np.asarray(normals, np.float32)[source]
    return Unwrapped(v[source], np.asarray(new_faces, np.int32), n, np.clip(uvs, 0.0, 1.0), source,
                     int(atlas.chart_count), float(atlas.utilization), time.perf_counter() - t0)


def _surface_area(vertices: np.ndarray, faces: np.ndarray) -> float:
    tri = vertices[np.asarray(faces, np.int64)].astype(np.float64)  # [F, 3, 3]
    return float(0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum())
