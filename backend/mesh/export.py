"""Writing meshes to files: GLB (``gltf.py``) and OBJ + MTL (``obj.py``) with normals, UVs and a
normal-mapped material; PLY and STL through trimesh.

The native frame of every mesh in the backend is Blender's: +Z up, the object facing -Y, the unit cube
[-0.5, 0.5]^3 of the decoder. glTF is +Y up with the front toward +Z, so GLB export maps (x, y, z) ->
(x, z, -y), exactly as the release's ``to_trimesh(transform_pose=True)`` does; Blender's glTF importer maps
it back. OBJ, PLY and STL are written in the native Z-up frame (Blender's OBJ/PLY/STL importers default to
-Z forward / Y up for OBJ, so choose "Z up" there, or use GLB).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..atomic import write_atomic
from ..errors import BadInput

EXPORT_FORMATS = ("glb", "obj", "ply", "stl")
Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]], np.float32)
"Right-multiply row vectors: (x, y, z) @ Z_UP_TO_Y_UP = (x, z, -y)."


def to_gltf_frame(points: np.ndarray) -> np.ndarray:
    """Blender-frame points or normals [N, 3] -> glTF frame: (x, y, z) -> (x, z, -y)."""
    return (np.asarray(points, np.float32) @ Z_UP_TO_Y_UP).astype(np.float32)


def from_gltf_frame(points: np.ndarray) -> np.ndarray:
    """Inverse of ``to_gltf_frame``: (x, y, z) -> (x, -z, y)."""
    return (np.asarray(points, np.float32) @ Z_UP_TO_Y_UP.T).astype(np.float32)


@dataclass
class MeshTextures:
    """Images a mesh's UVs index: UV (0, 0) is each image's bottom-left corner, (1, 1) its top-right
    (u right, v up, Blender's convention; glTF's top-left origin is handled by the writer)."""

    normal_png: bytes | None = None
    "Tangent-space normal map, OpenGL colours (+Y = image up, (n + 1) / 2): glTF's normalTexture."
    base_color_png: bytes | None = None
    "Optional base colour (sRGB)."
    textured: np.ndarray | None = None
    "[F] bool: the faces that take the images (None: all); the others get a plain material."


def export_mesh(vertices: np.ndarray, faces: np.ndarray, path: Path | str, normals: np.ndarray | None = None,
                file_format: str | None = None, uvs: np.ndarray | None = None,
                textures: MeshTextures | None = None, name: str = "mesh", write_normal_png: bool = True) -> Path:
    """Write one mesh (native frame) to ``path``; the format follows ``file_format`` or the suffix.

    GLB and OBJ carry what is given: vertex normals, UVs (``uvs`` [V, 2], v up) and, with ``textures``, a
    material whose normal map (and base colour) the UVs index: embedded in the GLB; for OBJ an MTL and the
    PNGs beside it (``obj.sidecar_names``; ``write_normal_png=False`` when the caller wrote that PNG).
    Without ``textures`` no material is written. PLY and STL get positions, faces and normals only.
    Every file is written to a temporary name and renamed (``write_atomic``): a failure leaves no partial
    file. Returns the path.
    """
    path = Path(path)
    fmt = (file_format or path.suffix.lstrip(".")).lower()
    if fmt not in EXPORT_FORMATS:
        raise BadInput(f"Unsupported mesh format {fmt!r}.", hint=f"Use one of: {', '.join(EXPORT_FORMATS)}.")
    v = np.asarray(vertices, np.float32)
    f = np.asarray(faces, np.int64)
    n = None if normals is None else np.asarray(normals, np.float32)
    tex = textures if uvs is not None and textures is not None else None
    primitives = _primitives(f, tex)
    if fmt == "glb":
        from .gltf import GltfMesh, glb_bytes

        glb = GltfMesh(name, to_gltf_frame(v), None if n is None else to_gltf_frame(n), uvs, primitives,
                       None if tex is None else tex.normal_png, None if tex is None else tex.base_color_png,
                       generator=f"hi3dgen-backend {__version__}")
        return write_atomic(path, lambda temp: temp.write_bytes(glb_bytes(glb)))
    if fmt == "obj":
        from .obj import ObjMesh, write_obj

        obj = ObjMesh(name, v, n, uvs, primitives, None if tex is None else tex.normal_png,
                      None if tex is None else tex.base_color_png)
        return write_obj(obj, path, write_normal_png)
    import trimesh

    mesh = trimesh.Trimesh(v, f, vertex_normals=n, process=False)
    return write_atomic(path, lambda temp: mesh.export(str(temp), file_type=fmt))


def _primitives(faces: np.ndarray, textures: MeshTextures | None) -> list[tuple[np.ndarray, bool]]:
    """(faces, takes the textures) groups: the textured faces first, then the plain ones."""
    if textures is None or textures.textured is None:
        return [(faces, textures is not None)]
    textured = np.asarray(textures.textured, bool)
    if textured.shape != (len(faces),):
        raise ValueError(f"textures.textured has shape {textured.shape}, expected ({len(faces)},)")
    return [(faces[textured], True), (faces[~textured], False)]
