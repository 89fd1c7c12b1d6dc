"""A trainer's export is a release checkpoint: strict loading, a place in a release folder, generation."""

from __future__ import annotations

import json

import numpy as np
import torch

from backend.devices import Placement
from backend.jobs import JobContext
from backend.models.loading import load_checkpoint, load_network, read_pipeline_json
from backend.models.testing import write_dinov2_folder, write_release_folder
from backend.pipelines.hi3dgen import GeometryModels, GeometryParams, generate_geometry
from training.export import place_in_release

from .conftest import run, tiny_config

CPU = Placement(torch.device("cpu"), torch.float32)


def _normal_image(size: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    x, y = (xx - size / 2) / (size * 0.4), -(yy - size / 2) / (size * 0.4)
    inside = x**2 + y**2 < 1
    n = np.dstack([x, y, np.sqrt(np.clip(1 - x**2 - y**2, 0, 1))])
    image = np.round((n + 1) / 2 * 255).astype(np.uint8)
    image[~inside] = 255
    return image


def test_the_export_loads_strictly_and_generates_through_the_engine(toy_data, tmp_path):
    """The official tiny variant (patch 1, what TINY_VARIANTS writes), 2 steps, EMA export."""
    config = tiny_config(steps=2, batch_size=1, ema_rate=0.5)
    config = type(config)(model=type(config.model)(variant="tiny_ss_flow"), decoder=config.decoder,
                          train=config.train)
    result = run(config, toy_data, tmp_path / "run")
    assert result.export is not None
    doc = json.loads(result.export.with_name(result.export.name + ".json").read_text())
    assert doc["name"] == "SparseStructureFlowModel" and doc["args"]["patch_size"] == 1
    flow = load_checkpoint(result.export)  # strict keys, shapes and dtypes
    release = write_release_folder(tmp_path / "trellis-normal")
    entry = place_in_release(release, "sparse_structure_flow_model", result.export)
    assert read_pipeline_json(release).models["sparse_structure_flow_model"] == entry == "ckpts/ss_flow_trained"
    loaded = load_network(release, "sparse_structure_flow_model")
    assert all(torch.equal(a, b) for a, b in zip(flow.state_dict().values(), loaded.state_dict().values()))
    models = GeometryModels.load(release, write_dinov2_folder(tmp_path / "dinov2"), CPU)
    vertices, faces, _ = generate_geometry(models, _normal_image(), GeometryParams(seed=1, ss_steps=2, slat_steps=1),
                                           JobContext())
    assert len(vertices) > 0 and len(faces) > 0 and np.isfinite(vertices).all()
