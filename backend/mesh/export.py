"""Writing meshes to files (GLB, OBJ, PLY, STL) through trimesh.

The native frame of every mesh in the backend is Blender's: +Z up, the object facing -Y, the unit cube
[-0.5, 0.5]^3 of the decoder. glTF is +Y up with the front toward +Z, so GLB export maps (x, y, z) ->
(x, z, -y), exactly as the release's ``to_trimesh(transform_pose=True)`` does; Blender's glTF importer maps
it back. OBJ, PLY and STL are written in the native Z-up frame (Blender's OBJ/PLY/STL importers default to
-Z forward / Y up for OBJ, so choose "Z up" there, or use GLB).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

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


def export_mesh(vertices: np.ndarray, faces: np.ndarray, path: Path | str, normals: np.ndarray | None = None,
                file_format: str | None = None) -> Path:
    """Write one mesh (native frame) to ``path``; the format follows ``file_format`` or the suffix.

    Positions, faces and (optionally) vertex normals only, as the release's GLB. Written to a temporary
    name and renamed (``write_atomic``): a failure leaves no partial file. Returns the path.
    """
    import trimesh

    path = Path(path)
    fmt = (file_format or path.suffix.lstrip(".")).lower()
    if fmt not in EXPORT_FORMATS:
        raise BadInput(f"Unsupported mesh format {fmt!r}.", hint=f"Use one of: {', '.join(EXPORT_FORMATS)}.")
    v, n = np.asarray(vertices, np.float32), normals
    if fmt == "glb":
        v = to_gltf_frame(v)
        n = None if normals is None else to_gltf_frame(normals)
    mesh = trimesh.Trimesh(v, np.asarray(faces, np.int64), vertex_normals=n, process=False)
    return write_atomic(path, lambda temp: mesh.export(str(temp), file_type=fmt))
