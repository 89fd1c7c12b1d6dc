"""The relief engine: valid closed meshes, faithful integration, masks, a 512 px image."""

from __future__ import annotations

import numpy as np
import trimesh

from backend.engines.base import EngineRequest, validate_params
from backend.engines.relief import ReliefEngine
from backend.images import LoadedImage
from backend.jobs import JobContext
from backend.relief.integrate import integrate_normals
from backend.relief.mask import estimate_mask
from backend.relief.mesh import relief_mesh

from .conftest import blob_rgba


def _sphere_normals(size: int, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:size, :size] + 0.5
    x, y = (xx - size / 2) / radius, (size / 2 - yy) / radius  # +Y up
    r2 = x ** 2 + y ** 2
    mask = r2 < 1.0
    z = np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))
    return np.stack([x, y, z], -1).astype(np.float32), mask, z * radius


def _request(rgba: np.ndarray, has_alpha: bool = True, **params) -> EngineRequest:
    image = LoadedImage(rgba.astype(np.float32) / 255.0, has_alpha, "RGBA")
    return EngineRequest(image, "t", 0, validate_params(ReliefEngine.params, params))


def test_integrating_sphere_normals_recovers_the_hemisphere():
    normals, mask, depth = _sphere_normals(128, 50.0)
    height = integrate_normals(normals, mask)
    inner = mask & (depth > 0.3 * 50.0)  # away from the rim, where slopes are capped
    err = np.abs((height - height[inner].mean()) - (depth - depth[inner].mean()))[inner]
    assert err.mean() < 0.03 * 50.0, err.mean()


def test_relief_mesh_is_closed_outward_and_manifold():
    cells = np.zeros((40, 50), bool)
    cells[5:35, 5:20] = True
    cells[10:20, 25:45] = True
    cells[22, 22] = cells[23, 23] = True  # corner-touching samples: a saddle square
    heights = np.random.default_rng(0).random(cells.shape) * 0.1
    mesh = relief_mesh(heights, cells, 0.05)
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    assert tm.is_watertight and tm.is_winding_consistent and tm.volume > 0
    edges = np.sort(tm.edges, axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert (counts == 2).all()  # every edge shared by exactly two faces
    assert mesh.uvs.shape == (len(mesh.vertices), 2) and mesh.uvs.min() >= 0 and mesh.uvs.max() <= 1


def test_front_faces_the_viewer_at_minus_y():
    out = ReliefEngine().generate(_request(blob_rgba(128)), JobContext())
    v = out.meshes[0].vertices
    tm = trimesh.Trimesh(v, out.meshes[0].faces, process=False)
    area = tm.area_faces / tm.area
    back = area[tm.face_normals[:, 1] > 0.99].sum()  # the flat back looks away from the viewer (+Y)
    front = area[tm.face_normals[:, 1] < 0.0].sum()
    assert back > 0.3 and front > 0.3
    assert np.isclose(max(np.ptp(v[:, 0]), np.ptp(v[:, 2])), 1.0, atol=0.05)


def test_estimated_mask_keeps_a_hole_that_shows_the_backdrop_and_fills_one_of_another_colour():
    img = np.full((100, 100, 3), 1.0, np.float32)
    img[20:80, 20:80] = (0.2, 0.3, 0.8)
    img[40:60, 25:45] = 1.0  # the backdrop seen through the object (a mug's handle): background
    img[40:60, 55:75] = (0.9, 0.8, 0.1)  # a yellow patch on the object: the object
    mask = estimate_mask(img)
    assert mask[25, 25] and not mask[5, 5] and not mask[50, 35] and mask[50, 65]


def test_relief_from_512px_rgba_is_valid():
    out = ReliefEngine().generate(_request(blob_rgba(512)), JobContext())  # its speed: bench/bench_relief_protocol.py
    mesh = out.meshes[0]
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    assert tm.is_watertight and tm.is_winding_consistent and tm.volume > 0


def test_given_normal_map_is_used():
    normals, mask, _ = _sphere_normals(128, 50.0)
    colours = ((normals + 1) * 127.5).astype(np.uint8)
    rgba = np.dstack([colours, (mask * 255).astype(np.uint8)])
    req = _request(rgba)
    req.normal_map = LoadedImage(rgba.astype(np.float32) / 255.0, True, "RGBA")
    out = ReliefEngine().generate(req, JobContext())
    assert out.stats["normals"] == "given"
    v = out.meshes[0].vertices
    assert np.ptp(v[:, 1]) > 0.2  # a hemisphere of radius ~0.4 at depth 0.5 plus the slab
