"""Blender RGB renders line up with the rasterised labels (same camera JSON), and the rgb stage runs end to end.

The first test needs bpy (run by ``make test-synthesis`` with the .venv-blender interpreter; skipped
elsewhere); the second runs the stage from the backend venv through a bpy subprocess.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from synthesis.camera import orbit_cameras
from synthesis.raster import rasterize

from .conftest import box

REPO = Path(__file__).resolve().parents[2]
BLENDER_PYTHON = os.environ.get("HI3DGEN_BLENDER_PYTHON") or str(REPO / ".venv-blender" / "bin" / "python")


def test_blender_silhouettes_match_the_rasterised_masks():
    pytest.importorskip("bpy")
    from synthesis.blender.render_rgb import render_views

    mesh = box((0.5, 0.3, 0.2))
    cameras = orbit_cameras(np.random.default_rng(0), 2, 64)
    rgb, alpha = render_views(mesh.vertices, mesh.faces, [c.to_json() for c in cameras], np.random.default_rng(1), 4)
    assert rgb.shape == (2, 64, 64, 3) and rgb.dtype == np.uint8
    for k, camera in enumerate(cameras):
        mask, rendered = rasterize(mesh, camera).mask, alpha[k] > 127
        assert (mask & rendered).sum() / (mask | rendered).sum() > 0.97  # one camera convention for both


@pytest.mark.skipif(not os.access(BLENDER_PYTHON, os.X_OK), reason="no .venv-blender interpreter")
def test_the_rgb_stage_puts_renders_in_the_shards(tmp_path):
    pytest.importorskip("skimage")  # the backend venv
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
