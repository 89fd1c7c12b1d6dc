"""The images one UV-mapped mesh of a result takes, the same for its files and for the add-on's material.

A mesh's UVs span the result's frame (the normal map's: UV (0, 0) = its bottom-left corner, (1, 1) = its
top-right). The faces whose UV triangle is counter-clockwise take the images (``shading.textured_faces``);
the others (the relief's back and side walls) a plain material. The images:

- ``normals``: the predicted camera-space map rewritten in the mesh's tangent space
  (``mesh/normal_texture.py``), so a renderer's Normal Map node shades the front with the prediction;
- ``base_color``: the input's pixels over the same frame (``mesh/base_color.py``), when the engine gives them.

A full-3D (hi3dgen) mesh's UVs are an atlas instead (``backend/bake``): its images come baked with it
(``MeshData.baked``), every face with a counter-clockwise UV triangle takes them, and ``mask`` is all true.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .engines.base import EngineResult
from .mesh.shading import ShadedMesh, textured_faces


@dataclass
class MeshImages:
    textured: np.ndarray
    "[F] bool over the surface's faces: those that take the images."
    normals: np.ndarray | None
    "[H, W, 3] unit tangent-space normals (OpenGL: +Y = image up); flat (0, 0, 1) off the mask."
    mask: np.ndarray | None
    "[H, W] bool, the object in the normal map's frame."
    base_color: np.ndarray | None
    "[H, W, 4] uint8 sRGB, alpha = the mask."


def mesh_images(surface: ShadedMesh, result: EngineResult, baked: MeshImages | None = None) -> MeshImages | None:
    """The images of ``surface`` (a result's mesh as ``shading.shaded_mesh`` gives it), None without UVs
    or without anything to show. ``baked`` (the mesh's ``MeshData.baked``: an atlas made for its UVs, as
    ``backend/bake`` makes for hi3dgen) is used as it is."""
    if baked is not None and surface.uvs is not None:
        return baked
    nm = result.normal_map
    if surface.uvs is None or (nm is None and result.base_color is None):
        return None
    textured = textured_faces(surface.faces, surface.uvs)
    normals = None
    if nm is not None:
        from .mesh.normal_texture import tangent_space_texture

        normals = tangent_space_texture(surface, textured, nm.normals, nm.mask)
    color = None
    if result.base_color is not None:
        from .mesh.base_color import base_color_texture

        same_frame = nm is not None and nm.mask.shape == result.base_color.shape[:2]
        mask = nm.mask if same_frame else result.base_color[..., 3] > 0.5
        color = base_color_texture(result.base_color, mask)
    return MeshImages(textured, normals, None if nm is None else nm.mask, color)
