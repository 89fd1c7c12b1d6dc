"""Public scripting API: one blocking call that turns an image into a mesh object.

Inside Blender the add-on is the package ``bl_ext.<repository>.hi3dgen`` (usually ``user_default``)::

    import importlib
    hi3dgen = importlib.import_module("bl_ext.user_default.hi3dgen")
    obj = hi3dgen.api.generate("/path/cat.png", engine="relief", seed=0, resolution=384)
    obj = hi3dgen.api.generate(bpy.data.images["cat.png"])          # an image datablock
    obj = hi3dgen.api.generate(bpy.data.objects["Ref"])             # a reference-image empty
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import bpy

from . import generation, sources
from .job import JobFailed
from .settings import BuildOptions, GenerateSettings


class GenerationError(RuntimeError):
    """Generation failed; ``code`` is the backend's error code, the scene is unchanged."""

    def __init__(self, failure: JobFailed) -> None:
        super().__init__(failure.user_text())
        self.code = failure.code
        self.hint = failure.hint
        self.log = failure.log


class GenerationWarning(UserWarning):
    """The object was made, but something about it needs your attention, for example a mask that covers
    nearly the whole image (the result is then a slab of the frame, not the object). The object's
    ``obj["hi3dgen_mask"]`` holds the mask's source, coverage, confidence and this warning."""


def generate(image: str | bpy.types.Image | bpy.types.Object | list[Any] | tuple[Any, ...], engine: str = "relief",
             seed: int = 0, *,
             shading: str = "AUTO", with_material: bool = False, with_color: bool = True, device: str = "auto",
             timeout: float | None = None, mask_path: str = "", view_camera: bool = True,
             align: bool | None = None, refine: bool | None = None, texture: bool | None = None,
             **params: Any) -> bpy.types.Object:
    """Generate a mesh from ``image`` and return the new object.

    ``image`` is an image file path, an image datablock (packed, file-backed or generated: its pixels), or a
    reference-image empty (an empty showing an image). When the result has a camera (relief always; hi3dgen with
    ``align``), the object is laid over the empty's picture, seen from the empty's viewpoint (a perspective view
    also gets a camera there); from a path or an image datablock it goes to the 3D cursor with a camera ``"<object>
    view"`` that sees it as the picture does (``view_camera=False``: none; ``obj["hi3dgen_view"]`` names it).
    Without a camera it goes to the 3D cursor, or beside the empty, turned like it. ``align``, ``refine``,
    ``texture``: the engine's switches, sent only when the backend's engine declares them (None: the engine's
    default). ``params`` are the engine's parameters (e.g. ``resolution=384`` for relief, ``ss_steps=25`` for
    hi3dgen); unknown names are errors. ``mask_path``: an optional mask image (white or opaque = the object).
    ``with_material``: a material with the mesh's normal texture (relief), ``with_color`` its base colour from the
    image. A list or tuple of pictures (any of the kinds above) is several views of ONE object (hi3dgen; its
    ``multiview_mode`` parameter): the first places and names the result; when all are reference-image empties
    their angles go along (``blender_addon/multiview.py``).
    Blocks until done; raises ``GenerationError`` on failure. A mask that covers nearly the whole image, or
    an unsure automatic mask, is reported with a ``GenerationWarning`` (``warnings.warn``;
    ``warnings.simplefilter("error", GenerationWarning)`` makes it an exception); ``obj["hi3dgen_mask"]`` always
    says where the mask came from and how much it covers.
    """
    try:
        picture, views, angles = _pictures(image)
        mask = sources.mask_from_file(mask_path)
    except sources.SourceProblem as exc:
        raise GenerationError(generation.refuse("bad_input", str(exc))) from None
    settings = GenerateSettings(image_name=picture.name, image_bytes=picture.data, engine=engine, seed=seed,
                                params=dict(params), strict_params=True, device=device, mask_bytes=mask,
                                want_textures=with_material, optional_params=_switches(align, refine, texture),
                                view_bytes=views, view_angles=angles)
    options = BuildOptions(shading=shading, with_material=with_material, with_color=with_color,
                           view_camera=view_camera)
    context = bpy.context
    if context.scene is None:
        raise GenerationError(JobFailed("no_scene", "There is no scene to add the object to."))
    try:
        if picture.reference is not None and context.view_layer is not None:
            context.view_layer.update()  # a script may just have moved the empty: matrix_world lags
        placement = sources.placement_for(context.scene, picture)
        objects = generation.run_blocking(context, settings, options, placement, timeout)
    except JobFailed as failure:
        raise GenerationError(failure) from None
    if generation.last_warning():
        warnings.warn(GenerationWarning(generation.last_warning()), stacklevel=2)
    return objects[0]


def _switches(align: bool | None, refine: bool | None, texture: bool | None) -> dict[str, Any]:
    """The switches given (not None), checked: the job sends those the engine declares."""
    given = {"align": align, "refine": refine, "texture": texture}
    for name, value in given.items():
        if value is not None and not isinstance(value, bool):
            raise GenerationError(generation.refuse("bad_input", f"{name} must be True, False or None, not "
                                                                 f"{type(value).__name__}."))
    return {name: value for name, value in given.items() if value is not None}


def _pictures(image: Any) -> tuple[sources.Picture, list[bytes], list[float]]:
    """The main picture, the other views' files, and the views' angles (when all are reference empties)."""
    if not isinstance(image, (list, tuple)):
        return _picture(image), [], []
    from . import multiview

    multiview.check_view_count(len(image))
    pictures = []
    for n, item in enumerate(image, 1):
        try:
            pictures.append(_picture(item))
        except sources.SourceProblem as exc:
            raise sources.SourceProblem(f"View {n}: {exc}") from None
    multiview.check_view_bytes(pictures)
    empties = [p.reference for p in pictures]
    angles = multiview.view_angles(empties) if all(e is not None for e in empties) else []
    return pictures[0], [p.data for p in pictures[1:]], angles


def _picture(image: Any) -> sources.Picture:
    """The picture of a path, an image datablock or a reference-image empty (``SourceProblem`` otherwise)."""
    if isinstance(image, (str, os.PathLike)):
        return sources.picture_from_file(os.fspath(image))
    if isinstance(image, bpy.types.Image):
        return sources.picture_from_image(image)
    if isinstance(image, bpy.types.Object):
        empty = sources.as_reference_empty(image)
        if empty is None:
            raise sources.SourceProblem(f"Object '{image.name}' is not a reference-image empty with an image "
                                        "(Add > Image > Reference).")
        picture = sources.picture_from_image(empty.data)
        picture.reference, picture.image = empty, None
        return picture
    raise sources.SourceProblem(f"Cannot generate from {type(image).__name__}: give an image file path, an "
                                "image datablock or a reference-image empty.")
