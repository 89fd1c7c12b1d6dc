"""Writing meshes to files for the CLI (GLB, OBJ, PLY, STL) through trimesh.

Meshes are in Blender's frame (+Z up); glTF is +Y up, so GLB export maps (x, y, z) -> (x, z, -y) as the
Hi3DGen release does. OBJ/PLY/STL keep the Z-up frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]], np.float32)


def export_mesh(vertices: np.ndarray, faces: np.ndarray, path: Path, normals: np.ndarray | None = None) -> None:
    """Write one mesh to ``path``; the format follows the suffix."""
    import trimesh

    fmt = path.suffix.lstrip(".").lower()
    v, n = vertices, normals
    if fmt in ("glb", "gltf"):
        v = vertices @ Z_UP_TO_Y_UP
        n = None if normals is None else normals @ Z_UP_TO_Y_UP
    mesh = trimesh.Trimesh(v, faces, vertex_normals=n, process=False)
    mesh.export(str(path), file_type=fmt)
