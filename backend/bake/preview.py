"""A baked mesh seen from a camera through the rasterizer: what its textures look like from the input view
(the bake's tests and bench compare these with the input picture and the predicted normals)."""

from __future__ import annotations

import numpy as np

from ..camera import Camera
from .picture import sample


def _pixels(vertices: np.ndarray, faces: np.ndarray, camera: Camera):  # noqa: ANN202 - (mask, face ids, bary)
    import torch

    from ..render.raster import rasterize_cameras

    raster = rasterize_cameras(torch.tensor(np.asarray(vertices, np.float32)),
                               torch.tensor(np.asarray(faces, np.int64)), [camera])
    mask = raster.mask[0].numpy()
    return mask, raster.face_id[0].numpy()[mask], raster.bary[0].numpy()[mask]


def _texture_reads(uvs: np.ndarray, faces: np.ndarray, face: np.ndarray, bary: np.ndarray,
                   texture: np.ndarray) -> np.ndarray:
    """Bilinear texels [N, C] at the UVs interpolated at each drawn pixel."""
    uv = np.einsum("nc,ncd->nd", bary, np.asarray(uvs, np.float64)[np.asarray(faces, np.int64)[face]])
    size_v, size_u = texture.shape[:2]
    pixels = np.stack([uv[:, 0] * size_u, (1.0 - uv[:, 1]) * size_v], axis=1)  # texel (u, v), v down
    return sample(texture, pixels)


def render_textured(vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray, texture: np.ndarray,
                    camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """(colours [H, W, C] in the texture's units, zero where empty; mask [H, W]) of the textured mesh."""
    mask, face, bary = _pixels(vertices, faces, camera)
    out = np.zeros((camera.height, camera.width, texture.shape[-1]), np.float32)
    out[mask] = _texture_reads(uvs, faces, face, bary, np.asarray(texture, np.float32))
    return out, mask


def render_normal_mapped(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray, uvs: np.ndarray,
                         tangent_texture: np.ndarray, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """(camera-space shading normals [H, W, 3], mask [H, W]) of the mesh under its tangent-space texture,
    with the frame ``normals.bake_normals`` writes in."""
    from ..mesh.normal_texture import tangent_frame
    from ..mesh.shading import ShadedMesh, textured_faces

    mesh = ShadedMesh(np.asarray(vertices, np.float32), np.asarray(faces, np.int32),
                      np.asarray(normals, np.float32), np.asarray(uvs, np.float32))
    f = mesh.faces.astype(np.int64)
    tangents, _ = tangent_frame(mesh, f[textured_faces(f, mesh.uvs)])
    _, signs = tangent_frame(mesh, f)
    mask, face, bary = _pixels(vertices, faces, camera)
    corners = f[face]
    n = _unit(np.einsum("nc,ncd->nd", bary, mesh.normals[corners]))
    t = np.einsum("nc,ncd->nd", bary, tangents[corners])
    t = _unit(t - np.einsum("nd,nd->n", t, n)[:, None] * n)
    b = signs[face, None] * np.cross(n, t)
    local = _unit(_texture_reads(uvs, faces, face, bary, np.asarray(tangent_texture, np.float32)))
    world = local[:, :1] * t + local[:, 1:2] * b + local[:, 2:] * n
    out = np.zeros((camera.height, camera.width, 3), np.float32)
    out[mask] = _unit(world @ camera.rotation.T)  # world -> camera
    return out, mask


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB of two arrays of values (same shape)."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0.0 else 10.0 * np.log10(peak * peak / mse)


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)).astype(np.float32)
