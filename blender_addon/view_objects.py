"""The estimated view in the scene: the camera made for a plain-image source, its background picture, and
the matrix that lays an object over a reference picture (the math is in ``view_camera``)."""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from typing import Any

import bpy
import numpy as np
from mathutils import Matrix

from .view_camera import BadCamera, PictureFrame, ViewCamera, overlay_matrix, parse_camera


@dataclass(frozen=True)
class Background:
    """The picture a plain-image generation came from, shown behind its view camera."""

    image: str = ""
    "An image datablock's name (an Image source)."
    path: str = ""
    "An image file (a File source): loaded, or reused when already loaded, when the camera is made."


def checked_view(data: Any) -> ViewCamera | None:
    """The result's camera, or None without one; a malformed one is reported and ignored (the object is then
    placed as without a camera)."""
    if data is None:
        return None
    try:
        return parse_camera(data)
    except BadCamera as exc:
        print(f"[Hi3DGen] WARNING: the backend's camera is unusable ({exc}); placed without it.", file=sys.stderr)
        return None


def overlay_rows(view: ViewCamera, frame: PictureFrame, vertices: np.ndarray) -> list[list[float]]:
    """``overlay_matrix`` as rows for ``mathutils.Matrix``."""
    return overlay_matrix(view, frame, vertices).tolist()


def eye_matrix(view: ViewCamera, frame: PictureFrame) -> Matrix:
    """The camera matrix at a reference empty's perspective viewpoint, turned like the empty (no scale)."""
    world = frame.world()
    axes = world[:3, :3] / np.linalg.norm(world[:3, :3], axis=0)  # the empty's unit axes as columns
    eye = frame.viewpoint(view)
    m = np.eye(4)
    m[:3, :3] = axes
    m[:3, 3] = world[:3, :3] @ (eye if eye is not None else np.zeros(3)) + world[:3, 3]
    return Matrix(m.tolist())


def view_camera(name: str, view: ViewCamera, matrix: Matrix, background: Background,
                created_images: list[Any]) -> bpy.types.Object:
    """A camera object (not linked) with ``view``'s lens at ``matrix`` (camera -> world); its resolution is
    stored as ``hi3dgen_resolution``. A newly loaded background image is added to ``created_images``
    (removed again if the build fails)."""
    data: Any = bpy.data.cameras.new(name)
    try:
        data.sensor_fit = "AUTO"
        data.sensor_width = 36.0
        data.clip_start, data.clip_end = view.clip_start, view.clip_end
        if view.orthographic:
            data.type = "ORTHO"
            data.ortho_scale = view.ortho_scale
        else:
            data.type = "PERSP"
            data.lens = view.lens()
        image = _background_image(background, created_images)
        if image is not None:
            data.show_background_images = True
            slot = data.background_images.new()
            slot.image = image
            slot.frame_method = "FIT"
            slot.alpha = 0.5
        obj = bpy.data.objects.new(name, data)
    except Exception:
        bpy.data.cameras.remove(data)
        raise
    obj.matrix_world = matrix
    obj["hi3dgen_resolution"] = [view.width, view.height]
    return obj


def link_camera(context: Any, camera: bpy.types.Object, collection: bpy.types.Collection) -> None:
    """Link the view camera; it becomes the scene's camera (with the picture's resolution) only when the
    scene has none, so no render setting the user chose is changed."""
    collection.objects.link(camera)
    scene = context.scene
    if scene.camera is None:
        scene.camera = camera
        width, height = camera["hi3dgen_resolution"]
        scene.render.resolution_x, scene.render.resolution_y = int(width), int(height)
        scene.render.resolution_percentage = 100
        scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0


def _background_image(background: Background, created_images: list[Any]) -> Any:
    """The background's image datablock (None when it cannot be had: the camera is made without one)."""
    if background.image:
        return bpy.data.images.get(background.image)
    if not background.path:
        return None
    path = bpy.path.abspath(background.path)
    if not os.path.isfile(path):
        return None
    before = {image.name for image in bpy.data.images}
    with contextlib.suppress(RuntimeError):  # unreadable by Blender: no background, the camera still helps
        image = bpy.data.images.load(path, check_existing=True)
        if image.name not in before:
            created_images.append(image)
        return image
    return None
