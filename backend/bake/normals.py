"""The predicted camera-space normal map baked as the mesh's tangent-space normal texture.

Each seen texel reads the predicted normal where its surface point projects, turns it from the input
camera's frame into the world (``n_world = R^T n_cam``) and writes it in the texel's tangent frame
``(n . T, n . B, n . N)`` (MikkTSpace-like, as ``mesh/normal_texture.py``: per-vertex tangents from the UV
gradients, orthogonalised against the interpolated vertex normal, B = sign * N x T; what Blender and glTF
viewers build when a file carries no tangents). A renderer's Normal Map node then shades the seen side with
the prediction. Unseen texels are flat (0, 0, 1): the geometry's own shading. Gutters copy the nearest
covered texel.
"""

from __future__ import annotations

import numpy as np

from ..camera import Camera
from ..mesh.normal_texture import tangent_frame
from ..mesh.shading import ShadedMesh, textured_faces
from .picture import sample, spread_foreground
from .texels import TexelMap, fill_gutters
from .visibility import Visibility


def bake_normals(texels: TexelMap, seen: Visibility, mesh: ShadedMesh, camera: Camera,
                 camera_normals: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Unit tangent-space normals [S, S, 3] (OpenGL: +Y along increasing v) from the predicted camera-space
    map [H, W, 3] and its mask [H, W] (the picture of ``camera``)."""
    flat = np.zeros((len(texels.face), 3), np.float32)
    flat[:, 2] = 1.0
    hit = np.nonzero(seen.seen)[0]
    if len(hit):
        faces = mesh.faces.astype(np.int64)
        textured = textured_faces(faces, mesh.uvs)  # zero-area UV faces would give unbounded tangents
        tangents, _ = tangent_frame(mesh, faces[textured])
        _, signs = tangent_frame(mesh, faces)
        sub = TexelMap(texels.size, texels.face[hit], texels.rows[hit], texels.cols[hit], texels.bary[hit])
        n = _unit(sub.interpolate(mesh.normals, faces))  # [K, 3]
        t = sub.interpolate(tangents, faces)
        t = _unit(t - np.einsum("kd,kd->k", t, n)[:, None] * n)
        b = signs[sub.face, None] * np.cross(n, t)
        picture = spread_foreground(np.asarray(camera_normals, np.float32), mask)
        predicted = _unit(sample(picture, seen.pixels[hit]) @ camera.rotation.astype(np.float32))  # R^T n
        local = np.stack([np.einsum("kd,kd->k", predicted, t), np.einsum("kd,kd->k", predicted, b),
                          np.maximum(np.einsum("kd,kd->k", predicted, n), 0.0)], axis=1)
        flat[hit] = _unit(local)
    image = texels.image(flat, (0.0, 0.0, 1.0))
    return fill_gutters(image, texels.covered)


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)).astype(np.float32)
