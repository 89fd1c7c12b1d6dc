"""Quality filters: plain functions ``(mesh, FilterConfig) -> FilterResult``, each with its threshold in the config.

``run_filters`` applies every one (they are cheap next to generation) so the run's report says every reason
an asset was rejected, not only the first.
"""

from __future__ import annotations

from ..config import FilterConfig
from ..mesh import Mesh
from .base import FilterResult
from .detail import detail_filter
from .shape import scale_filter, thin_filter
from .topology import degenerate_filter, manifold_filter, self_intersection_filter

FILTERS = (manifold_filter, degenerate_filter, self_intersection_filter, detail_filter, thin_filter, scale_filter)
"In the order they run; a mesh that is empty fails them all at once (see run_filters)."

__all__ = ["FILTERS", "FilterResult", "run_filters"]


def run_filters(mesh: Mesh, cfg: FilterConfig) -> list[FilterResult]:
    if len(mesh.faces) == 0:
        return [FilterResult(f.__name__.removesuffix("_filter"), False, 0.0, 0.0, "the mesh is empty")
                for f in FILTERS]
    return [f(mesh, cfg) for f in FILTERS]
