"""Several pictures of one object as one request: a list of images (paths, datablocks, reference empties) or
the selected reference-image empties.

The first picture is the main one: it names the result and places it (over its empty, as one picture does).
When every picture is a reference-image empty, each view's angle is its empty's turn about the world's
vertical axis relative to the first empty (degrees, counter-clockwise seen from above). The angles go to the
backend, which reports them back in the result's stats (``views``); the hi3dgen networks take no
camera, so the angles do not change the mesh: order the views as you like, the first one sets the frame.
"""

from __future__ import annotations

import math
from typing import Any

from . import sources
from .settings import GenerateSettings

MAX_VIEWS = 16
MAX_VIEW_BYTES = 60 << 20
"All views' files together (one request frame carries at most 64 MiB)."


def selected_reference_empties(context: Any) -> list[Any]:
    """The selected reference-image empties, the active one first, the others by name."""
    active = sources.as_reference_empty(getattr(context, "active_object", None))
    others = sorted((o for o in getattr(context, "selected_objects", []) or []
                     if sources.as_reference_empty(o) is not None and o is not active), key=lambda o: o.name)
    return ([active] if active is not None else []) + others


def empty_yaw(empty: Any) -> float:
    """The direction the empty's picture faces (its local +Z), as an angle about the world Z axis, degrees."""
    facing = empty.matrix_world.to_3x3().col[2]
    return math.degrees(math.atan2(facing.y, facing.x))


def view_angles(empties: list[Any]) -> list[float]:
    """Each empty's yaw relative to the first, in (-180, 180]."""
    base = empty_yaw(empties[0])
    out = []
    for empty in empties:
        turn = (empty_yaw(empty) - base) % 360.0
        out.append(turn - 360.0 if turn > 180.0 else turn)
    return out


def check_view_count(count: int) -> None:
    if count < 2:
        raise sources.SourceProblem("Multi-view generation needs at least two pictures of the object.")
    if count > MAX_VIEWS:
        raise sources.SourceProblem(f"{count} pictures were given; at most {MAX_VIEWS} views are used.")


def check_view_bytes(pictures: list[sources.Picture]) -> None:
    total = sum(len(p.data) for p in pictures)
    if total > MAX_VIEW_BYTES:
        raise sources.SourceProblem(f"The views' files add up to {total >> 20} MiB; at most "
                                    f"{MAX_VIEW_BYTES >> 20} MiB are sent. Use smaller images (PNG or JPEG).")


def add_selected_views(settings: GenerateSettings, context: Any) -> sources.Picture:
    """Make ``settings`` the selected reference empties' request (the active one first) with their angles;
    returns the first view's picture (the result is placed over its empty)."""
    empties = selected_reference_empties(context)
    check_view_count(len(empties))
    pictures = []
    for empty in empties:
        picture = sources.picture_from_image(empty.data)
        picture.reference, picture.image = empty, None
        pictures.append(picture)
    check_view_bytes(pictures)
    settings.image_name, settings.image_bytes = pictures[0].name, pictures[0].data
    settings.view_bytes = [p.data for p in pictures[1:]]
    settings.view_angles = view_angles(empties)
    return pictures[0]
