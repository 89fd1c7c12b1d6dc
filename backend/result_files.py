"""The files one engine result becomes: ``<stem>.<format>`` (more meshes: ``<stem>_1.<format>``...),
``<stem>_normal.png``, and for OBJ ``<stem>.mtl``.

The rule that ties the normal map to the mesh: a mesh's UVs span the normal map that comes with it,
UV (0, 0) = the map's bottom-left corner, (1, 1) = its top-right (u right, v up). Both engines' ``generate``
return the map over the frame they worked in (relief: the object's crop; hi3dgen: its square crop), so the
written map is that frame too; ``normals`` alone writes the input's whole frame.

For a mesh with UVs (relief) ``<stem>_normal.png`` is the mesh's tangent-space normal texture
(``mesh/normal_texture.py``), 16-bit RGB, and the GLB embeds exactly those bytes as ``normalTexture``;
the faces whose UVs are mirrored or degenerate (the relief's back and walls) get a plain material.
``--convention directx`` flips the PNG's green and ``object`` writes the predicted normals in Blender's
object space instead; the GLB always embeds the OpenGL tangent-space texture, as glTF requires, and an
OBJ's MTL names the PNG as written (so it is in the chosen convention). For a mesh
without UVs (hi3dgen, until it is unwrapped) the PNG is the predicted camera-space map, RGBA with the mask
as alpha, and the mesh files carry normals but no material.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .atomic import write_bytes_atomic
from .engines.base import EngineResult, NormalMapData
from .mesh.export import MeshTextures, export_mesh
from .mesh.obj import sidecar_names
from .mesh.shading import ShadedMesh, shaded_mesh, textured_faces
from .normalmap import encode_png16, to_colors, to_rgba16


def output_suffixes(result: EngineResult, export_format: str) -> list[str]:
    """What follows the stem in each file name ``write_result`` may write (for claiming names)."""
    files = ["_normal.png"] if result.normal_map is not None else []
    for i in range(len(result.meshes)):
        suffix = "" if i == 0 else f"_{i}"
        files.append(f"{suffix}.{export_format}")
        if export_format == "obj":
            files += [f"{suffix}.mtl", f"{suffix}_normal.png"]
    return list(dict.fromkeys(files))


def write_result(result: EngineResult, folder: Path, stem: str, export_format: str, convention: str) -> None:
    """Write the normal map and every mesh of ``result`` (the PNG first: the mesh files refer to it)."""
    nm = result.normal_map
    shaded = [shaded_mesh(m.vertices, m.faces, m.normals, m.uvs) for m in result.meshes]
    textures = [_textures(s, nm) for s in shaded]  # (MeshTextures, tangent-space normals [H, W, 3]) or None
    if nm is not None:
        write_bytes_atomic(folder / f"{stem}_normal.png", _written_png(textures[0] if textures else None,
                                                                        nm, convention))
    for i, (mesh, surface, texture) in enumerate(zip(result.meshes, shaded, textures)):
        suffix = "" if i == 0 else f"_{i}"
        path = folder / f"{stem}{suffix}.{export_format}"
        same_png = i == 0 and nm is not None and sidecar_names(path)["normal"] == f"{stem}_normal.png"
        export_mesh(surface.vertices, surface.faces, path, surface.normals, uvs=surface.uvs,
                    textures=None if texture is None else texture[0], name=mesh.name or "mesh",
                    write_normal_png=not same_png)


def _textures(surface: ShadedMesh, nm: NormalMapData | None) -> tuple[MeshTextures, np.ndarray] | None:
    """The normal texture of a mesh with UVs (as ``MeshTextures`` and as unit normals), else None."""
    if surface.uvs is None or nm is None:
        return None
    from .mesh.normal_texture import tangent_space_texture

    textured = textured_faces(surface.faces, surface.uvs)
    tangent = tangent_space_texture(surface, textured, nm.normals, nm.mask)  # [H, W, 3]
    return MeshTextures(normal_png=_rgb16(tangent, "opengl"), textured=textured), tangent


def _written_png(texture: tuple[MeshTextures, np.ndarray] | None, nm: NormalMapData, convention: str) -> bytes:
    """``<stem>_normal.png``: the first mesh's texture in ``convention``, or the predicted map (RGBA)."""
    if texture is None:
        return encode_png16(to_rgba16(nm.normals, nm.mask, convention))
    if convention == "opengl":
        assert texture[0].normal_png is not None
        return texture[0].normal_png
    if convention == "directx":
        return _rgb16(texture[1], "directx")
    flat = np.where(nm.mask[..., None], nm.normals, np.array([0.0, 0.0, 1.0], np.float32))
    return _rgb16(flat, "object")


def _rgb16(normals: np.ndarray, convention: str) -> bytes:
    return encode_png16(np.round(to_colors(normals, convention) * 65535.0).astype(np.uint16))
