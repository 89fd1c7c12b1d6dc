"""Blender RGB renders line up with the rasterised labels (one camera convention), and the rgb stage runs end to end.

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

from synthesis.views import orbit_cameras, render_views

from .conftest import box

REPO = Path(__file__).resolve().parents[2]
BLENDER_PYTHON = os.environ.get("HI3DGEN_BLENDER_PYTHON") or str(REPO / ".venv-blender" / "bin" / "python")
needs_blender = pytest.mark.skipif(not os.access(BLENDER_PYTHON, os.X_OK), reason="no .venv-blender interpreter")


@needs_blender
def test_blender_silhouettes_match_the_rasterised_masks(tmp_path):
    mesh = box((0.5, 0.3, 0.2))
    cameras = orbit_cameras(np.random.default_rng(0), 2, 64)
    np.savez(tmp_path / "mesh.npz", vertices=mesh.vertices, faces=mesh.faces)
    cams = json.dumps([c.to_dict() for c in cameras]).encode()
    np.savez(tmp_path / "views.npz", cameras=np.frombuffer(cams, np.uint8))
    command = [BLENDER_PYTHON, "-m", "synthesis.blender.render_rgb", "--mesh", str(tmp_path / "mesh.npz"),
               "--views", str(tmp_path / "views.npz"), "--out", str(tmp_path / "rgb.npz"), "--seed", "1",
               "--samples", "4"]
    done = subprocess.run(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    with np.load(tmp_path / "rgb.npz", allow_pickle=False) as out:
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
