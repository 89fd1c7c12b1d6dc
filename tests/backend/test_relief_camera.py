"""The relief result carries its camera: seen through it, the mesh's silhouette is the image's foreground."""

from __future__ import annotations

import numpy as np
import pytest

from backend.camera import Camera
from backend.engines.base import EngineRequest, validate_params
from backend.engines.relief import ReliefEngine
from backend.images import LoadedImage
from backend.jobs import JobContext
from backend.render.shade import render_normal_map


def _shape(height: int, width: int) -> np.ndarray:
    """An off-centre ellipse with a square notch, alpha as the mask [H, W, 4] float32 in [0, 1]."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    inside = ((x - 0.62 * width) / (0.25 * width)) ** 2 + ((y - 0.4 * height) / (0.3 * height)) ** 2 < 1.0
    inside &= ~((x > 0.62 * width) & (y > 0.4 * height) & (x < 0.75 * width) & (y < 0.55 * height))
    rgba = np.zeros((height, width, 4), np.float32)
    rgba[..., :3] = 0.6
    rgba[..., 3] = inside
    return rgba


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.mark.parametrize(("height", "width", "faces"), [(90, 140, 0), (150, 100, 3000), (2300, 900, 4000)],
                         ids=["wide", "tall-decimated", "shrunk-working-image"])
def test_relief_silhouette_through_its_camera_is_the_alpha(height: int, width: int, faces: int):
    rgba = _shape(height, width)
    params = validate_params(ReliefEngine.params, {"resolution": 128, "faces": faces})
    result = ReliefEngine().generate(EngineRequest(LoadedImage(rgba, True, "RGBA"), "t", 0, params), JobContext())
    camera = Camera.from_dict(result.stats["camera"])
    assert camera.orthographic and (camera.width, camera.height) == (width, height)
    mesh = result.meshes[0]
    if height > 1000:  # render at a tenth of the size: the same camera with fewer, larger pixels
        camera = Camera(camera.rotation, camera.translation, width // 10, height // 10, 0.0,
                        camera.ortho_scale * (max(width // 10, height // 10) * 10 / max(width, height)))
        rgba = rgba[5::10, 5::10][: height // 10, : width // 10]
    mask, _, depth = render_normal_map(mesh.vertices, mesh.faces, camera)
    alpha = rgba[..., 3] > 0.5
    iou = _iou(mask, alpha)
    print(f"{width}x{height}: IoU {iou:.4f}")
    assert iou > 0.97, iou
    assert np.isfinite(depth[mask]).all() and depth[mask].min() > 0.5  # the camera is in front of the mesh


def test_relief_camera_looks_at_the_front():
    rgba = _shape(64, 64)
    params = validate_params(ReliefEngine.params, {"resolution": 48})
    result = ReliefEngine().generate(EngineRequest(LoadedImage(rgba, True, "RGBA"), "t", 0, params), JobContext())
    camera = Camera.from_dict(result.stats["camera"])
    forward = -camera.rotation[2]  # the camera looks down its -Z
    np.testing.assert_allclose(forward, [0.0, 1.0, 0.0], atol=1e-9)  # toward +Y: the relief faces -Y
    np.testing.assert_allclose(camera.rotation[1], [0.0, 0.0, 1.0], atol=1e-9)  # world up is screen up


def test_the_written_normal_map_lines_up_with_the_uvs(tmp_path):
    """The rule of ``result_files``: a mesh's UVs span the normal map written with it. Each front vertex's
    UV lookup in the written map (``--convention object``: the predicted normals as they are) gives the
    prediction at the pixel the relief's camera projects that vertex to in the input (the ``normals``
    command's whole frame); one pixel off, the lookup misses (the normals vary per pixel here)."""
    from backend.mesh.normal_texture import camera_to_mesh_frame
    from backend.normalmap import decode_png16
    from backend.result_files import write_result

    side = 96
    rgba = _shape(side, side)
    rgba[..., :3] = np.random.default_rng(0).random((side, side, 1))  # per-pixel shading detail
    params = validate_params(ReliefEngine.params, {"resolution": 48, "detail_mode": "texture", "detail": 2.0})
    request = EngineRequest(LoadedImage(rgba, True, "RGBA"), "t", 0, params)
    engine = ReliefEngine()
    result = engine.generate(request, JobContext())
    mesh = result.meshes[0]
    write_result(result, tmp_path, "t", "glb", "object")  # what the CLI writes with --convention object
    colours = decode_png16((tmp_path / "t_normal.png").read_bytes())[..., :3]
    texture = colours.astype(np.float64) / 65535.0 * 2.0 - 1.0  # [h, w, 3] Blender object space
    full = engine.normals(request, JobContext()).normal_map  # the input's whole frame, camera space
    assert full is not None
    front = mesh.uvs
    h, w = texture.shape[:2]
    camera = Camera.from_dict(result.stats["camera"])
    at = camera.project(mesh.vertices)[:, :2]  # (col, row) in the input
    tex_c, tex_r = (front[:, 0] * w).astype(int), ((1.0 - front[:, 1]) * h).astype(int)
    img_c, img_r = at[:, 0].astype(int), at[:, 1].astype(int)
    ok = (tex_c >= 0) & (tex_c < w) & (tex_r >= 0) & (tex_r < h) & (img_c >= 1) & (img_c < side - 1)
    ok &= (img_r >= 1) & (img_r < side - 1)
    ok &= full.mask[img_r.clip(0, side - 1), img_c.clip(0, side - 1)]
    ok &= mesh.vertices[:, 1] < mesh.vertices[:, 1].max() - 1e-6  # the front, not the back
    assert ok.sum() > 100
    looked_up = texture[tex_r[ok], tex_c[ok]]
    looked_up /= np.linalg.norm(looked_up, axis=1, keepdims=True)

    def error(dc: int) -> float:
        truth = camera_to_mesh_frame(full.normals[img_r[ok], img_c[ok] + dc])
        return float(np.degrees(np.arccos(np.clip((looked_up * truth).sum(axis=1), -1.0, 1.0))).mean())

    print(f"\nUV lookup vs the projected pixel: {error(0):.3f} deg mean; one pixel off: {error(1):.2f}")
    assert error(0) < 0.1 and error(1) > 10 * error(0) + 1.0
