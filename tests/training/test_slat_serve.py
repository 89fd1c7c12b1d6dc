"""Checkpoints the trainers write replace the release's flows and generate through ``python -m backend serve``.

Both flows are fine-tuned from a tiny random release (``[model] init``: what a team would do with the real
one) for one step, placed into a copy of the release with ``training.export.place_in_release``, and the real
backend subprocess generates a mesh from them.
"""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np

from backend import protocol as P
from backend.models.loading import read_pipeline_json
from backend.models.testing import write_dinov2_folder, write_release_folder
from training.config import ModelSection
from training.export import place_in_release

from ..backend.conftest import BackendProcess, blob_rgba, png_bytes
from ..backend.test_nirne import write_release as write_yoso_folder
from .conftest import run, tiny_config
from .test_slat_flow import run_slat, slat_config

FAST = {"ss_steps": 3, "slat_steps": 2, "normal_resolution": 64, "align": False}


def test_trained_flows_generate_through_the_backend_server(toy_data, slat_data, tmp_path):
    source = write_release_folder(tmp_path / "source")
    ss = tiny_config(steps=1, batch_size=1, ema_rate=0.5)
    ss = dataclasses.replace(ss, model=ModelSection(variant="tiny_ss_flow", init=str(source)))
    ss_export = run(ss, toy_data, tmp_path / "ss").export
    slat_export = run_slat(slat_config(model={"init": str(source)}, steps=1, batch_size=1, ema_rate=0.5),
                           slat_data, tmp_path / "slat").export
    weights = tmp_path / "weights"
    release = weights / "trellis-normal"
    shutil.copytree(source, release)
    place_in_release(release, "sparse_structure_flow_model", ss_export)
    place_in_release(release, "slat_flow_model", slat_export)
    models = read_pipeline_json(release).models
    assert models["sparse_structure_flow_model"] == "ckpts/ss_flow_trained"
    assert models["slat_flow_model"] == "ckpts/slat_flow_trained"
    write_dinov2_folder(weights / "dinov2")
    write_yoso_folder(weights / "yoso-normal")
    server = BackendProcess(env={"HI3DGEN_WEIGHTS": str(weights), "HF_HUB_OFFLINE": "1"})
    try:
        server.expect(P.Hello, timeout=300)  # start-up on a busy machine
        image = np.frombuffer(png_bytes(blob_rgba(128)), np.uint8)
        server.send(P.Generate(engine="hi3dgen", seed=1, params=FAST, image_bytes=image), 1)
        out = server.collect(1, timeout=600)
    finally:
        server.close()
    assert out["error"] is None, out["error"]
    mesh = out["meshes"][0]
    assert len(mesh["faces"]) > 0 and np.isfinite(mesh["vertices"]).all()
