"""Public scripting API: one blocking call that turns an image file into a mesh object.

Inside Blender the add-on is the package ``bl_ext.<repository>.hi3dgen`` (usually ``user_default``)::

    import importlib
    hi3dgen = importlib.import_module("bl_ext.user_default.hi3dgen")
    obj = hi3dgen.api.generate("/path/cat.png", engine="relief", seed=0, resolution=384)
"""

from __future__ import annotations

from typing import Any

import bpy

from . import generation, mesh_builder, sources
from .job import JobFailed
from .settings import BuildOptions, GenerateSettings


class GenerationError(RuntimeError):
    """Generation failed; ``code`` is the backend's error code, the scene is unchanged."""

    def __init__(self, failure: JobFailed) -> None:
        super().__init__(failure.user_text())
        self.code = failure.code
        self.hint = failure.hint
        self.log = failure.log


def generate(image_path: str, engine: str = "relief", seed: int = 0, *, shading: str = "AUTO",
             with_material: bool = False, device: str = "auto", timeout: float | None = None,
             mask_path: str = "", **params: Any) -> bpy.types.Object:
    """Generate a mesh from ``image_path`` and return the new object (placed at the 3D cursor).

    ``params`` are the engine's parameters (e.g. ``resolution=384`` for relief, ``ss_steps=25`` for hi3dgen);
    unknown names are errors. ``mask_path``: an optional mask image (white or opaque = the object). Blocks
    until done; raises ``GenerationError`` on failure.
    """
    try:
        picture = sources.picture_from_file(image_path)
        mask = sources.mask_from_file(mask_path)
    except sources.SourceProblem as exc:
        raise GenerationError(generation.refuse("bad_input", str(exc))) from None
    settings = GenerateSettings(image_name=picture.name, image_bytes=picture.data, engine=engine, seed=seed,
                                params=dict(params), strict_params=True, device=device, mask_bytes=mask)
    options = BuildOptions(shading=shading, with_material=with_material)
    context = bpy.context
    if context.scene is None:
        raise GenerationError(JobFailed("no_scene", "There is no scene to add the object to."))
    try:
        objects = generation.run_blocking(context, settings, options,
                                          mesh_builder.Placement.at_cursor(context.scene), timeout)
    except JobFailed as failure:
        raise GenerationError(failure) from None
    return objects[0]
