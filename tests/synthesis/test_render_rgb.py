"""Blender renders line up with the rasterised labels (one camera convention): RGB silhouettes match the masks,
Blender's own normal maps of a sphere and a cube match the analytic normals, and the rgb stage runs end to end.

Both tests run in the backend venv (torch: the rasterizer) and start the bpy interpreter (.venv-blender, or
$HI3DGEN_BLENDER_PYTHON) as a subprocess, as the pipeline does; they are skipped when it is missing.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from synthesis import sdf
from synthesis.mesh import Mesh
from synthesis.views import orbit_cameras, render_views

from .analytic import box_truth, interior, mean_error_deg, only_on_the_outline, sphere_truth
from .conftest import box, icosphere

REPO = Path(__file__).resolve().parents[2]
BLENDER_PYTHON = os.environ.get("HI3DGEN_BLENDER_PYTHON") or str(REPO / ".venv-blender" / "bin" / "python")
needs_blender = pytest.mark.skipif(not os.access(BLENDER_PYTHON, os.X_OK), reason="no .venv-blender interpreter")


def _blender(module: str, mesh: Mesh, cameras: list, folder: Path, *extra: str) -> dict[str, np.ndarray]:
    """Run ``python -m synthesis.blender.<module>`` in the bpy interpreter on one mesh and its cameras."""
    np.savez(folder / "mesh.npz", vertices=mesh.vertices, faces=mesh.faces)
    cams = json.dumps([c.to_dict() for c in cameras]).encode()
    np.savez(folder / "views.npz", cameras=np.frombuffer(cams, np.uint8))
    command = [BLENDER_PYTHON, "-m", f"synthesis.blender.{module}", "--mesh", str(folder / "mesh.npz"),
               "--views", str(folder / "views.npz"), "--out", str(folder / "out.npz"), *extra]
    done = subprocess.run(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    with np.load(folder / "out.npz", allow_pickle=False) as out:
        return {k: out[k] for k in out.files}


@needs_blender
def test_blender_normal_maps_of_a_sphere_and_a_cube_match_the_analytic_normals(tmp_path):
    cameras = orbit_cameras(np.random.default_rng(3), 2, 96)
    sphere = _blender("render_normals", icosphere(0.4, 5), cameras, tmp_path)
    half = np.array([0.4, 0.35, 0.3])
    cube_mesh = Mesh(*sdf.mesh_field(sdf.box((0, 0, 0), tuple(half)), 64))  # type: ignore[arg-type]
    cube = _blender("render_normals", cube_mesh, cameras, tmp_path)
    for k, camera in enumerate(cameras):
        hit, normals, _ = sphere_truth(camera, 0.4)
        mask = sphere["alpha"][k] > 127
        assert only_on_the_outline(mask, hit)
        inner = interior(np.where(hit, 0, -1), 2) & mask
        assert mean_error_deg(sphere["normals"][k][inner], normals[inner]) < 1.0
        hit, normals, face = box_truth(camera, half)
        mask = cube["alpha"][k] > 127
        assert only_on_the_outline(mask, hit)
        inner = interior(np.where(hit, face, -1), 3) & mask  # away from the rounded edges too
        assert inner.sum() > 0.3 * hit.sum()
        assert mean_error_deg(cube["normals"][k][inner], normals[inner]) < 1.0


@needs_blender
def test_blender_silhouettes_match_the_rasterised_masks(tmp_path):
    mesh = box((0.5, 0.3, 0.2))
    cameras = orbit_cameras(np.random.default_rng(0), 2, 64)
    out = _blender("render_rgb", mesh, cameras, tmp_path, "--seed", "1", "--samples", "4")
    rgb, alpha = out["rgb"], out["alpha"]
    assert rgb.shape == (2, 64, 64, 3) and rgb.dtype == np.uint8 and alpha.shape == (2, 64, 64)
    masks = render_views(mesh, cameras).mask
    for k in range(2):
        mask, rendered = masks[k], alpha[k] > 127
        assert (mask & rendered).sum() / (mask | rendered).sum() > 0.97  # one camera convention for both
        assert rgb[k][mask].astype(float).std(0).max() > 3  # shaded: the box's faces differ in brightness
    assert np.abs(rgb[0, 0, 0].astype(int) - rgb[1, 0, 0]).max() > 0  # a new background colour per view


@needs_blender
def test_the_rgb_stage_puts_renders_in_the_shards(tmp_path):
    from synthesis.pipeline import run
    from synthesis.reader import iter_samples

    from .conftest import tiny_config

    config = tiny_config(generators=[{"kind": "hard_surface", "count": 1, "resolution": 48}],
                         views={"count": 1, "resolution": 32}, render={"rgb": True, "samples": 2,
                                                                        "blender_python": BLENDER_PYTHON},
                         dataset={"shard_size": 2, "val_fraction": 0.0, "test_fraction": 0.0})
    summary = run(config, tmp_path / "out", progress=False)
    assert not summary.notes
    (sample,) = iter_samples(tmp_path / "out" / "dataset", "train")
    view = sample.views[0]
    assert view.rgb is not None and view.rgb.shape == (32, 32, 3)
    assert sample.meta["rgb"] == ["view000.rgb.png"]
