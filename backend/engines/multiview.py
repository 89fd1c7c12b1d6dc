"""Multi-view input for the ``hi3dgen`` engine: every extra picture of the object becomes one more condition.

Each view runs the single-view front end on its own (mask, square crop, NiRNE, the 518 px condition image),
so views may differ in size and framing. The flows then see all conditions (``sampling.sample_flow_euler_views``,
mode ``multiview_mode``). The mesh is posed in the first view's frame, as a single-view result is.

View angles (``EngineRequest.view_angles``, degrees about the vertical axis, the first view's frame at 0) are
checked and reported back in ``stats["views"]``; the networks have no camera input (TRELLIS's multi-image
conditioning is tuning-free and unposed), so the angles do not change the mesh.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BackendError, BadInput
from ..jobs import JobContext

if TYPE_CHECKING:
    from .base import EngineRequest
    from .hi3dgen import Hi3DGenEngine

MAX_VIEWS = 16


def check_views(count: int, angles: tuple[float, ...]) -> None:
    """Refuse too many views, or angles that are not one finite number per view."""
    if count > MAX_VIEWS:
        raise BadInput(f"{count} views were given; at most {MAX_VIEWS} are used.", hint="Pass fewer views.")
    if angles and (len(angles) != count or not all(isinstance(a, (int, float)) and math.isfinite(a)
                                                   for a in angles)):
        raise BadInput(f"View angles must be one finite number per view ({count} views, {len(angles)} angles).",
                       hint="Give one angle in degrees per view, or none.")


def view_conditions(engine: Hi3DGenEngine, request: EngineRequest, ctx: JobContext) -> list[np.ndarray]:
    """The condition image [518, 518, 3] uint8 of each extra view (``request.views``), in order."""
    from ..preprocess import condition_image, square_crop_with_frame

    check_views(1 + len(request.views), request.view_angles)
    if request.params["normals"] == "given":
        raise BadInput("Normals 'given' applies to one picture, not several views.",
                       hint="Choose normals 'auto' or 'nirne' for multi-view input.")
    out = []
    for index, image in enumerate(request.views, start=2):
        ctx.check()
        view = engine._for_mask(replace(request, image=image, normal_map=None, views=()))
        try:
            rgba, mask, frame = square_crop_with_frame(view.image, matting=engine._segmenter(view))
            normals, _, colors = engine._normal_map(view, rgba, mask, frame, ctx)
        except BackendError as exc:
            raise type(exc)(f"View {index}: {exc.message}", hint=exc.hint, code=exc.code) from exc
        out.append(condition_image(normals, mask, colors=colors))
    return out


def view_stats(request: EngineRequest) -> dict[str, Any]:
    """What the result reports about its views: their count, the mode, and the angles when given."""
    out: dict[str, Any] = {"count": 1 + len(request.views), "mode": request.params["multiview_mode"]}
    if request.view_angles:
        out["angles"] = [float(a) for a in request.view_angles]
    return out
