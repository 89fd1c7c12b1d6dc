"""Unwrap a full-3D mesh and bake the input view onto it: the entry point of ``backend/bake``.

Steps (each a progress point and a cancel point of the ``texture`` stage): unwrap (xatlas), texel map,
visibility from the input camera, base colour, tangent-space normals.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from ..camera import Camera
from ..errors import BadInput
from ..jobs import JobContext
from ..mesh.shading import ShadedMesh, textured_faces
from ..result_textures import MeshImages
from .unwrap import UnwrapOptions, unwrap

LARGE_MESH_FACES = 100_000
"Meshes with more faces get the larger atlas."


@dataclass(frozen=True)
class BakeOptions:
    size: int = 0
    "Atlas side in texels; 0 chooses 1024, or 2048 above ``LARGE_MESH_FACES`` faces."
    unwrap: UnwrapOptions = field(default_factory=UnwrapOptions)
    device: str = "cpu"

    def atlas_side(self, faces: int) -> int:
        if self.size:
            return self.size
        return 2048 if faces > LARGE_MESH_FACES else 1024


@dataclass
class BakedMesh:
    """The mesh split along its UV seams, with its UVs and the two images (``MeshImages``)."""

    vertices: np.ndarray  # [V', 3] float32
    faces: np.ndarray  # [F, 3] int32
    normals: np.ndarray  # [V', 3] float32, unit
    uvs: np.ndarray  # [V', 2] float32, v up
    images: MeshImages
    stats: dict


def bake_mesh(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray | None, camera: Camera,
              rgba: np.ndarray, camera_normals: np.ndarray, mask: np.ndarray,
              options: BakeOptions = BakeOptions(), ctx: JobContext | None = None) -> BakedMesh:
    """UVs and textures for a mesh (world = Blender's frame) seen by ``camera`` in the picture ``rgba``
    [H, W, 3|4] (floats in [0, 1], sRGB), with the predicted camera-space normals [H, W, 3] and mask [H, W]
    over the same picture (H x W = camera.height x camera.width)."""
    from .color import bake_base_color
    from .normals import bake_normals
    from .texels import texel_map
    from .visibility import visible_texels

    ctx = ctx or JobContext()
    _check_picture(camera, rgba, camera_normals, mask)
    timings: dict[str, float] = {}
    step = _Steps(ctx, timings)
    step("unwrap", "unwrapping (xatlas)")
    size = options.atlas_side(len(faces))
    smooth = smooth_normals(vertices, faces) if normals is None else normals
    flat = unwrap(vertices, faces, smooth, replace(options.unwrap, resolution=size))
    mesh = ShadedMesh(flat.vertices, flat.faces, _unit(flat.normals), flat.uvs)
    step("texels", "finding the atlas texels")
    texels = texel_map(mesh.uvs, mesh.faces, size)
    step("visibility", "finding what the input view sees")
    points = texels.interpolate(mesh.vertices, mesh.faces)
    seen = visible_texels(points, face_normals(mesh.vertices, mesh.faces)[texels.face], mesh.vertices,
                          mesh.faces, camera, mask, options.device)
    step("color", "baking the base colour")
    color = bake_base_color(texels, seen, np.asarray(rgba)[..., :3], mask)
    step("normals", "baking the normal map")
    tangent = bake_normals(texels, seen, mesh, camera, camera_normals, mask)
    step("done", "")
    images = MeshImages(textured_faces(mesh.faces, mesh.uvs), tangent, np.ones((size, size), bool), color)
    stats = {"atlas": size, "charts": flat.charts, "utilization": round(flat.utilization, 3),
             "vertices": len(mesh.vertices), "seen_fraction": round(float(seen.seen.mean()), 3) if len(texels.face)
             else 0.0, "seconds": {k: round(v, 3) for k, v in timings.items()}}
    return BakedMesh(mesh.vertices, mesh.faces, mesh.normals, mesh.uvs, images, stats)


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit normals [F, 3] of counter-clockwise faces (the surface's true orientation, for visibility)."""
    tri = np.asarray(vertices, np.float64)[np.asarray(faces, np.int64)]
    return _unit(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]))


def smooth_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals [V, 3] (unit), smooth everywhere (the vertices stay as they are)."""
    f = np.asarray(faces, np.int64)
    tri = np.asarray(vertices, np.float64)[f]
    weighted = np.repeat(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), 3, axis=0)  # [3F, 3]
    sums = np.stack([np.bincount(f.ravel(), weighted[:, i], minlength=len(vertices)) for i in range(3)], axis=1)
    return _unit(sums)


class _Steps:
    """Progress through the ``texture`` stage, with the seconds each step took."""

    NAMES = ("unwrap", "texels", "visibility", "color", "normals", "done")

    def __init__(self, ctx: JobContext, timings: dict[str, float]) -> None:
        self.ctx, self.timings = ctx, timings
        self.current: str | None = None
        self.start = time.perf_counter()

    def __call__(self, name: str, message: str) -> None:
        now = time.perf_counter()
        if self.current is not None:
            self.timings[self.current] = now - self.start
        self.current, self.start = name, now
        self.ctx.step("texture", self.NAMES.index(name), len(self.NAMES) - 1, message)


def _check_picture(camera: Camera, rgba: np.ndarray, normals: np.ndarray, mask: np.ndarray) -> None:
    shape = (camera.height, camera.width)
    ok = (np.ndim(rgba) == 3 and np.shape(rgba)[:2] == shape and np.shape(rgba)[2] in (3, 4)
          and np.shape(normals) == (*shape, 3) and np.shape(mask) == shape)
    if not ok:
        raise BadInput(f"The picture to bake ({np.shape(rgba)}), its normals ({np.shape(normals)}) and mask "
                       f"({np.shape(mask)}) must all be {shape[0]} x {shape[1]}, the camera's size.",
                       hint="Bake with the camera estimated for this picture.")


def _unit(v: np.ndarray | None) -> np.ndarray:
    assert v is not None
    v = np.asarray(v, np.float64)
    length = np.linalg.norm(v, axis=-1, keepdims=True)
    out = np.where(length > 1e-20, v / np.maximum(length, 1e-20), np.array([0.0, 0.0, 1.0]))
    return out.astype(np.float32)
