"""The aligned view of a mesh whose vertices are being optimised: what is differentiable and what is not.

Visibility is decided by the project's rasterizer (``render/raster.py``), which is not differentiable:
it gives each pixel of the scoring window its front-most face and barycentrics. Given those, everything
else is plain torch on the vertices and carries gradients: the camera-frame vertices, their window-pixel
positions, and the per-pixel normal of the hit face (``render/shade.normal_image``). Moving a vertex
therefore changes the normals of the pixels its faces cover; which faces cover which pixels is updated by
re-rasterizing every iteration. The silhouette is handled separately (``silhouette.py``), through the
window positions of contour vertices.

The window is ``align/score.py``'s ``Target``: the input's mask and normals resampled into a square around
the object, so the cost does not depend on the input image's size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..align.score import Target
from ..camera import Camera
from ..render.raster import Raster, rasterize, to_screen
from ..render.shade import face_normals, normal_image


@dataclass
class CameraTensors:
    """One camera on the refinement device."""

    rotation: torch.Tensor  # [3, 3]
    translation: torch.Tensor  # [3]
    pixel_scale: torch.Tensor  # [1]
    perspective: bool
    near: float


@dataclass
class View:
    """One rendering of the current vertices in the window."""

    cam: torch.Tensor  # [V, 3] camera-frame vertices (differentiable)
    window: torch.Tensor  # [V, 2] window-pixel positions (differentiable)
    raster: Raster  # B = 1, S x S (not differentiable)
    normals: torch.Tensor  # [S, S, 3] camera-space normals of the visible faces, zero where empty (differentiable)
    facing: torch.Tensor  # [F] bool, the face turns towards the camera


def camera_tensors(camera: Camera, device: torch.device) -> CameraTensors:
    f32 = dict(dtype=torch.float32, device=device)
    return CameraTensors(torch.tensor(camera.rotation, **f32), torch.tensor(camera.translation, **f32),
                         torch.tensor([camera.pixel_scale], **f32), not camera.orthographic, camera.clip_start)


def render_view(vertices: torch.Tensor, faces: torch.Tensor, cam: CameraTensors, target: Target) -> View:
    """Render world vertices [V, 3] (with gradients) and faces [F, 3] into the target's window."""
    size = target.mask.shape[0]
    c = vertices @ cam.rotation.T + cam.translation  # [V, 3]
    screen = to_screen(c[None], cam.pixel_scale, target.height, target.width, cam.perspective)[0]  # [V, 3]
    origin = torch.tensor(target.origin, dtype=screen.dtype, device=screen.device)
    window = (screen[:, :2] - origin) * target.zoom
    drawn = torch.cat([window, screen[:, 2:]], 1).detach()[None]
    raster = rasterize(drawn, faces, size, size, cam.perspective, near=cam.near)
    normals = normal_image(raster, c[None], faces, perspective=cam.perspective)[0]
    fn = face_normals(c[None], faces)[0]  # [F, 3]
    if cam.perspective:
        towards = -c[faces].mean(1)  # from the face centre to the camera
    else:
        towards = torch.tensor([0.0, 0.0, 1.0], device=c.device).expand_as(fn)
    facing = (fn * towards).sum(-1).detach() > 0
    return View(c, window, raster, normals, facing)


def normal_loss(view: View, target: Target) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean 1 - cos, mean angle in degrees) over the pixels both the render and the target cover."""
    both = view.raster.mask[0] & (target.mask > 0.5)  # [S, S]
    if not bool(both.any()):
        zero = view.normals.sum() * 0.0
        return zero, zero.detach()
    cos = (view.normals[both] * target.normals[both]).sum(-1).clamp(-1.0, 1.0)  # [P]
    angle = torch.rad2deg(torch.acos(cos.detach().clamp(-1.0 + 1e-7, 1.0 - 1e-7))).mean()
    return (1.0 - cos).mean(), angle


def silhouette_iou(view: View, target: Target) -> float:
    drawn, wanted = view.raster.mask[0], target.mask > 0.5
    return float((drawn & wanted).sum()) / max(1.0, float((drawn | wanted).sum()))
