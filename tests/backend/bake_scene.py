"""A known mesh, camera and picture to bake (tests/backend/test_bake.py, tests/blender/test_baked_files.py,
bench/bench_bake.py): a smooth colour field painted on the surface, rendered with the project's rasterizer.

``python -m tests.backend.bake_scene FOLDER`` (the backend's interpreter) writes ``bust.glb`` and ``bust.obj``
with their baked textures, ``bust_truth.npz`` (the picture, normals, mask, depth and camera) and
``bust_arrays.npz`` (the mesh arrays and ``MeshTexture`` pixels as the add-on receives them) for the Blender
tests.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from backend.camera import Camera, look_at, make_camera


def pattern(points: np.ndarray) -> np.ndarray:
    """A smooth colour field over surface points [N, 3] -> [N, 3] in [0.1, 0.9]."""
    x, y, z = points.T
    return np.stack([0.5 + 0.4 * np.sin(9 * x + 2 * z), 0.5 + 0.4 * np.sin(7 * y - 5 * z),
                     0.5 + 0.4 * np.cos(6 * z + 3 * x)], axis=1).astype(np.float32)


def view(size: int = 256, fov_deg: float = 35.0) -> Camera:
    """The input view: from the front-right, a little above."""
    return make_camera(*look_at([1.4, -2.4, 0.9], [0.0, 0.0, 0.0]), size, size, fov=math.radians(fov_deg))


def picture(vertices: np.ndarray, faces: np.ndarray, camera: Camera) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(RGB [H, W, 3] of ``pattern`` on the surface, camera-space normals [H, W, 3], mask [H, W]).

    The normals are the surface's own plus a smooth bump field (about 10 degrees), as a predicted map holds
    detail the geometry lacks: a bake that dropped the map would show."""
    import torch

    from backend.render.raster import rasterize_cameras
    from backend.render.shade import render_normal_map, surface_points

    mask, normals, _ = render_normal_map(vertices, faces, camera)
    v, f = torch.tensor(vertices), torch.tensor(faces)
    points = surface_points(rasterize_cameras(v, f, [camera]), v[None], f)[0].numpy()
    rgb = np.zeros((camera.height, camera.width, 3), np.float32)
    rgb[mask] = pattern(points[mask])
    rows, cols = np.mgrid[0:camera.height, 0:camera.width] * (64.0 / max(camera.height, camera.width))
    bump = np.stack([np.sin(cols / 3.0), np.cos(rows / 4.0), np.zeros_like(rows)], axis=-1) * 0.18
    bumped = normals + bump
    normals[mask] = bumped[mask] / np.linalg.norm(bumped[mask], axis=-1, keepdims=True)  # zero outside, as given
    return rgb, normals.astype(np.float32), mask


def write_baked(folder: Path) -> None:
    """The bust baked from ``view()`` and written as the CLI writes a result (GLB and OBJ)."""
    from backend.bake.bake import BakeOptions, bake_mesh
    from backend.engines.base import EngineResult, MeshData, NormalMapData
    from backend.result_files import write_result
    from tests.backend.shapes import bust

    vertices, faces = bust()
    camera = view()
    rgb, normals, mask = picture(vertices, faces, camera)
    baked = bake_mesh(vertices, faces, None, camera, rgb, normals, mask, BakeOptions(size=512))
    mesh = MeshData("bust", baked.vertices, baked.faces, baked.normals, baked.uvs, baked=baked.images)
    result = EngineResult(meshes=[mesh], normal_map=NormalMapData(normals, mask))
    folder.mkdir(parents=True, exist_ok=True)
    write_result(result, folder, "bust", "glb", "opengl")
    write_result(result, folder, "bust", "obj", "opengl")
    from backend.render.shade import render_normal_map
    from backend.server import texture_frames

    frames = {f"texture_{f.role}": f.pixels for f in texture_frames(0, mesh, result)}  # what the add-on receives
    np.savez(folder / "bust_arrays.npz", vertices=mesh.vertices, faces=mesh.faces, normals=mesh.normals,
             uvs=mesh.uvs, **frames)

    depth = render_normal_map(vertices, faces, camera)[2]
    np.savez(folder / "bust_truth.npz", rgb=rgb, normals=normals, mask=mask, depth=depth,
             rotation=camera.rotation, translation=camera.translation, fov=camera.fov)


if __name__ == "__main__":
    write_baked(Path(sys.argv[1]))
