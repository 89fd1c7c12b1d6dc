"""Shape filters: thin structures the 64^3 grid cannot hold, and scale/proportion sanity."""

from __future__ import annotations

import numpy as np

from ..config import FilterConfig
from ..labels import solid_occupancy
from ..mesh import Mesh
from .base import FilterResult, verdict


def thin_filter(mesh: Mesh, cfg: FilterConfig) -> FilterResult:
    fraction = thin_fraction(mesh, cfg.thin_resolution)
    return verdict("thin", fraction, cfg.max_thin_fraction, fraction <= cfg.max_thin_fraction,
                   "share of the solid thinner than ~2 voxels:")


def thin_fraction(mesh: Mesh, resolution: int) -> float:
    """Share of the solid voxels that a morphological opening by a one-voxel cross removes (1 if no solid)."""
    from scipy.ndimage import binary_opening, generate_binary_structure

    solid = solid_occupancy(mesh, resolution)
    total = int(solid.sum())
    if total == 0:
        return 1.0
    opened = binary_opening(solid, structure=generate_binary_structure(3, 1))
    return 1.0 - float(opened.sum()) / total


def scale_filter(mesh: Mesh, cfg: FilterConfig) -> FilterResult:
    """Inside the unit cube, not flat or needle-like, few parts, a sensible face count."""
    lo, hi = mesh.vertices.min(0), mesh.vertices.max(0)
    size = hi - lo
    aspect = float(size.min() / size.max()) if size.max() > 0 else 0.0
    problems = []
    if lo.min() < -0.5 or hi.max() > 0.5:
        problems.append("outside the unit cube")
    if aspect < cfg.min_aspect:
        problems.append(f"aspect {aspect:.3g} < {cfg.min_aspect:g}")
    parts = component_count(mesh)
    if parts > cfg.max_components:
        problems.append(f"{parts} parts > {cfg.max_components}")
    if not cfg.min_faces <= len(mesh.faces) <= cfg.max_faces:
        problems.append(f"{len(mesh.faces)} faces outside [{cfg.min_faces}, {cfg.max_faces}]")
    result = verdict("scale", aspect, cfg.min_aspect, not problems, "")
    return result if not problems else type(result)(**{**result.to_json(), "reason": "; ".join(problems)})


def component_count(mesh: Mesh) -> int:
    """Connected parts (faces linked through shared vertices)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    f = mesh.faces
    rows = np.concatenate([f[:, 0], f[:, 1], f[:, 2]])
    cols = np.concatenate([f[:, 1], f[:, 2], f[:, 0]])
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(mesh.vertices),) * 2)
    used = np.zeros(len(mesh.vertices), bool)
    used[f.ravel()] = True
    _, label = connected_components(graph, directed=False)
    return int(len(np.unique(label[used])))
