"""Images from a raster: the silhouette and camera-space normal maps in the project's one convention.

Normals are camera-space unit vectors, +X right, +Y up, +Z towards the viewer (stored as (n + 1) / 2 by
``encode_normals``), which is what NiRNE outputs and what alignment compares against.
"""

from __future__ import annotations

import numpy as np
import torch

from ..camera import Camera
from .raster import Raster, camera_tensors, rasterize_cameras, to_camera


def face_normals(cam_vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unit normals [B, F, 3] of counter-clockwise faces [F, 3] from vertices [B, V, 3] (any frame)."""
    tri = cam_vertices[:, faces.long()]  # [B, F, 3, 3]
    n = torch.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1)
    return torch.nn.functional.normalize(n, dim=-1, eps=1e-20)


def normal_image(raster: Raster, cam_vertices: torch.Tensor, faces: torch.Tensor,
                 cam_normals: torch.Tensor | None = None, two_sided: bool = True,
                 perspective: bool = False) -> torch.Tensor:
    """Camera-space normals [B, H, W, 3] of the visible surface (zero where empty).

    ``cam_normals`` [B, V, 3] (vertex normals already in camera space) are interpolated with the
    barycentrics; without them each pixel takes its face's normal. ``two_sided`` turns normals that face
    away from the viewer around, so the winding of the mesh does not matter.
    """
    b, h, w = raster.face_id.shape
    hit = raster.mask.view(b, -1)  # [B, H*W]
    face = raster.face_id.view(b, -1).clamp_min(0)  # [B, H*W]
    if cam_normals is None:
        fn = face_normals(cam_vertices, faces)  # [B, F, 3]
        n = torch.gather(fn, 1, face[..., None].expand(-1, -1, 3))
    else:
        corners = faces.long()[face]  # [B, H*W, 3] vertex ids
        vn = torch.gather(cam_normals, 1, corners.view(b, -1, 1).expand(-1, -1, 3)).view(b, -1, 3, 3)
        n = torch.nn.functional.normalize((vn * raster.bary.view(b, -1, 3, 1)).sum(2), dim=-1, eps=1e-20)
    if two_sided:
        view = _to_viewer(raster, cam_vertices, faces, perspective)  # [B, H*W, 3]
        n = torch.where(((n * view).sum(-1, keepdim=True) < 0), -n, n)
    return (n * hit[..., None]).view(b, h, w, 3)


def _to_viewer(raster: Raster, cam_vertices: torch.Tensor, faces: torch.Tensor, perspective: bool) -> torch.Tensor:
    """Direction from each pixel's surface point towards the camera [B, H*W, 3] (+Z when orthographic)."""
    b = raster.face_id.shape[0]
    if not perspective:
        return torch.tensor([0.0, 0.0, 1.0], device=cam_vertices.device).expand(b, raster.face_id[0].numel(), 3)
    return -surface_points(raster, cam_vertices, faces).view(b, -1, 3)


def surface_points(raster: Raster, cam_vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """The 3D point (in the frame of ``cam_vertices`` [B, V, 3]) seen at each pixel [B, H, W, 3]."""
    b, h, w = raster.face_id.shape
    corners = faces.long()[raster.face_id.view(b, -1).clamp_min(0)]  # [B, H*W, 3]
    p = torch.gather(cam_vertices, 1, corners.view(b, -1, 1).expand(-1, -1, 3)).view(b, -1, 3, 3)
    return (p * raster.bary.view(b, -1, 3, 1)).sum(2).view(b, h, w, 3)


def encode_normals(normals: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unit normals [..., 3] -> colours (n + 1) / 2 in [0, 1]; the background gets the flat normal +Z."""
    flat = torch.tensor([0.0, 0.0, 1.0], device=normals.device, dtype=normals.dtype)
    return (torch.where(mask[..., None], normals, flat) + 1.0) / 2.0


def render_normal_map(vertices: np.ndarray, faces: np.ndarray, camera: Camera,
                      device: torch.device | str = "cpu") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One view of a mesh as the project's inputs look: mask [H, W] bool, camera-space normals [H, W, 3]
    (zero outside), depth [H, W] (inf outside)."""
    v = torch.tensor(np.asarray(vertices, np.float32), device=device)
    f = torch.tensor(np.asarray(faces, np.int64), device=device)
    raster = rasterize_cameras(v, f, [camera])
    rot, trans, _ = camera_tensors([camera], device)
    normals = normal_image(raster, to_camera(v, rot, trans), f, perspective=not camera.orthographic)
    return raster.mask[0].cpu().numpy(), normals[0].cpu().numpy(), raster.depth[0].cpu().numpy()
