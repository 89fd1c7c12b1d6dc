"""Texturing an engine result's mesh from the input view: the hi3dgen engine's one call into ``backend/bake``.

It needs the input view's camera (the ``align`` step's ``stats["camera"]``); without one the mesh stays
untextured and the stats say why.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ..jobs import JobContext
from .unwrap import MAX_FACES

NO_CAMERA = ("no textures: baking needs the input view's camera; turn 'align' on (or 'texture' off to "
             "silence this note)")


def texture_mesh(mesh: Any, rgba: np.ndarray, normals: np.ndarray, mask: np.ndarray,
                 camera: dict[str, Any] | None, ctx: JobContext, device: str = "cpu") -> tuple[Any, dict[str, Any]]:
    """(the ``MeshData`` with UVs and ``baked`` images, ``stats["texture"]``) for the input picture ``rgba``
    [H, W, 4] and the predicted normals [H, W, 3] and mask [H, W] at its size (``uncrop_normals``); the mesh
    unchanged and a note when there is no ``camera`` (``Camera.to_dict``)."""
    from ..camera import Camera
    from .bake import BakeOptions, bake_mesh

    if camera is None:
        return mesh, {"baked": False, "note": NO_CAMERA}
    if len(mesh.faces) > MAX_FACES:
        return mesh, {"baked": False, "note": f"no textures: the mesh has {len(mesh.faces)} faces, texturing takes "
                      f"at most {MAX_FACES}; set decimate_faces"}
    view = Camera.from_dict(camera)
    baked = bake_mesh(mesh.vertices, mesh.faces, mesh.normals, view, rgba, normals, mask,
                      BakeOptions(device=device), ctx)
    textured = replace(mesh, vertices=baked.vertices, faces=baked.faces, normals=baked.normals, uvs=baked.uvs,
                       baked=baked.images)
    return textured, {"baked": True, **baked.stats}
