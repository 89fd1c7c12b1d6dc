"""The files one engine result becomes: ``<stem>.<format>`` (more meshes: ``<stem>_1.<format>``...),
``<stem>_normal.png``, and for OBJ ``<stem>.mtl`` (and ``<stem>_color.png``).

The rule that ties the normal map to the mesh: a mesh's UVs span the normal map that comes with it,
UV (0, 0) = the map's bottom-left corner, (1, 1) = its top-right (u right, v up). Both engines' ``generate``
return the map over the frame they worked in (relief: the object's crop; hi3dgen: its square crop), so the
written map is that frame too; ``normals`` alone writes the input's whole frame.

For a mesh with UVs (relief) ``<stem>_normal.png`` is the mesh's tangent-space normal texture
(``mesh/normal_texture.py``), 16-bit RGB, and the GLB embeds exactly those bytes as ``normalTexture``;
the faces whose UVs are mirrored or degenerate (the relief's back and walls) get a plain material.
When the engine gives the input's pixels (relief), the textured material's base colour is that image over
the same frame (``result_textures.py``): embedded in the GLB, ``<stem>_color.png`` beside an OBJ.
``--convention directx`` flips the PNG's green and ``object`` writes the predicted normals in Blender's
object space instead; the GLB always embeds the OpenGL tangent-space texture, as glTF requires, and an
OBJ's MTL names the PNG as written (so it is in the chosen convention). A hi3dgen mesh unwrapped and baked
(``backend/bake``, param ``texture``) brings its own atlas images (``MeshData.baked``): the same files, every
face textured. For a mesh without UVs (hi3dgen with ``texture`` or ``align`` off) the PNG is the predicted
camera-space map, RGBA with the mask as alpha, and the mesh files carry normals but no material.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .atomic import write_bytes_atomic
from .engines.base import EngineResult, NormalMapData
from .mesh.export import MeshTextures, export_mesh
from .mesh.obj import sidecar_names
from .mesh.shading import shaded_mesh
from .normalmap import encode_png16, to_colors, to_rgba16
from .result_textures import MeshImages, mesh_images


def output_suffixes(result: EngineResult, export_format: str) -> list[str]:
    """What follows the stem in each file name ``write_result`` may write (for claiming names)."""
    files = ["_normal.png"] if result.normal_map is not None else []
    for i in range(len(result.meshes)):
        suffix = "" if i == 0 else f"_{i}"
        files.append(f"{suffix}.{export_format}")
        if export_format == "obj":
            files += [f"{suffix}.mtl", f"{suffix}_normal.png", f"{suffix}_color.png"]
    return list(dict.fromkeys(files))


def write_result(result: EngineResult, folder: Path, stem: str, export_format: str, convention: str) -> None:
    """Write the normal map and every mesh of ``result`` (the PNG first: the mesh files refer to it)."""
    nm = result.normal_map
    shaded = [shaded_mesh(m.vertices, m.faces, m.normals, m.uvs) for m in result.meshes]
    images = [mesh_images(s, result, m.baked) for s, m in zip(shaded, result.meshes)]
    textures = [None if i is None else _textures(i) for i in images]
    if nm is not None:
        write_bytes_atomic(folder / f"{stem}_normal.png", _written_png(images[0] if images else None,
                                                                        textures[0] if textures else None,
                                                                        nm, convention))
    for i, (mesh, surface, texture) in enumerate(zip(result.meshes, shaded, textures)):
        suffix = "" if i == 0 else f"_{i}"
        path = folder / f"{stem}{suffix}.{export_format}"
        same_png = i == 0 and nm is not None and sidecar_names(path)["normal"] == f"{stem}_normal.png"
        export_mesh(surface.vertices, surface.faces, path, surface.normals, uvs=surface.uvs, textures=texture,
                    name=mesh.name or "mesh", write_normal_png=not same_png)


def _textures(images: MeshImages) -> MeshTextures:
    """The PNGs a mesh file embeds or names: the OpenGL tangent-space normals (16-bit RGB) and the base
    colour (8-bit RGB; the mask plays no part in an opaque material)."""
    normal = None if images.normals is None else _rgb16(images.normals, "opengl")
    color = None if images.base_color is None else _png8(images.base_color[..., :3])
    return MeshTextures(normal_png=normal, base_color_png=color, textured=images.textured)


def _written_png(images: MeshImages | None, texture: MeshTextures | None, nm: NormalMapData,
                 convention: str) -> bytes:
    """``<stem>_normal.png``: the first mesh's texture in ``convention``, or the predicted map (RGBA)."""
    if images is None or images.normals is None or texture is None:
        return encode_png16(to_rgba16(nm.normals, nm.mask, convention))
    if convention == "opengl":
        assert texture.normal_png is not None
        return texture.normal_png
    if convention == "directx":
        return _rgb16(images.normals, "directx")
    flat = np.where(nm.mask[..., None], nm.normals, np.array([0.0, 0.0, 1.0], np.float32))
    return _rgb16(flat, "object")


def _rgb16(normals: np.ndarray, convention: str) -> bytes:
    return encode_png16(np.round(to_colors(normals, convention) * 65535.0).astype(np.uint16))


def _png8(pixels: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(out, format="PNG", compress_level=6)
    return out.getvalue()
