"""The align step of the hi3dgen engine (in process, the geometry networks replaced by a known mesh) and the
CLI's ``--camera-json`` output."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from backend.camera import Camera, look_at, make_camera, rotation_angle
from backend.render.shade import render_normal_map
from tests.backend.shapes import suzanne


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # many small tensor ops: a second thread only spins on a shared machine
    yield
    torch.set_num_threads(before)


def _truth() -> Camera:
    return make_camera(*look_at([1.6, -2.2, 1.1], [0.02, 0.0, -0.03]), 120, 100, fov=math.radians(40))


def test_generate_returns_the_camera_of_the_input_view(monkeypatch):
    import backend.pipelines.hi3dgen as geometry
    from backend.engines.base import EngineRequest, validate_params
    from backend.engines.hi3dgen import PARAMS, Hi3DGenEngine
    from backend.images import LoadedImage
    from backend.jobs import JobContext
    from backend.settings import BackendSettings

    vertices, faces = suzanne()
    truth = _truth()
    mask, normals, _ = render_normal_map(vertices, faces, truth)
    alpha = mask.astype(np.float32)[..., None]
    image = LoadedImage(np.dstack([np.full((*mask.shape, 3), 0.6, np.float32), alpha]), True, "RGBA")
    given = LoadedImage(np.dstack([(normals + 1) / 2, alpha]).astype(np.float32), True, "RGBA")
    monkeypatch.setattr(geometry, "generate_geometry", lambda models, condition, params, ctx: (vertices, faces, {}))
    engine = Hi3DGenEngine(BackendSettings())
    monkeypatch.setattr(engine, "_models", lambda request, ctx: None)
    monkeypatch.setattr(engine, "_require_weights", lambda request, geometry: None)  # no weights here
    stages: list[str] = []
    ctx = JobContext(report=lambda stage, step, total, message: stages.append(stage))
    params = validate_params(PARAMS, {"remove_floaters": False})
    result = engine.generate(EngineRequest(image, "monkey", 0, params, normal_map=given), ctx)
    assert "align" in stages
    data = json.loads(json.dumps(result.stats["camera"]))  # travels as JSON in the done message
    camera = Camera.from_dict(data)
    assert (camera.width, camera.height) == (120, 100), "the camera is for the input image, not the crop"
    assert rotation_angle(camera.rotation, truth.rotation) <= 5.0
    got = render_normal_map(result.meshes[0].vertices, result.meshes[0].faces, camera)[0]
    assert (got & mask).sum() / (got | mask).sum() >= 0.95
    assert data["alignment"]["iou"] >= 0.9

    off = validate_params(PARAMS, {"remove_floaters": False, "align": False})
    assert "camera" not in engine.generate(EngineRequest(image, "monkey", 0, off, normal_map=given), ctx).stats


def test_camera_json_is_written_only_when_asked(tmp_path):
    from backend.batch import BatchJob, _write
    from backend.engines.base import EngineResult

    result = EngineResult(stats={"camera": _truth().to_dict()})
    _write(BatchJob(images=[], output=tmp_path, camera_json=False), "a", result)
    assert not (tmp_path / "a_camera.json").exists()
    _write(BatchJob(images=[], output=tmp_path, camera_json=True), "a", result)
    back = Camera.from_dict(json.loads((tmp_path / "a_camera.json").read_text()))
    np.testing.assert_allclose(back.rotation, _truth().rotation, atol=1e-12)
    _write(BatchJob(images=[], output=tmp_path / "b", camera_json=True), "b", EngineResult())  # relief: none
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())


def test_cli_has_the_camera_json_flag():
    from backend.cli import build_parser

    args = build_parser().parse_args(["generate", "x.png", "--engine", "hi3dgen", "--camera-json"])
    assert args.camera_json


def test_the_glb_carries_the_camera(tmp_path):
    import pygltflib

    from backend.batch import BatchJob, _write
    from backend.engines.base import EngineResult, MeshData

    vertices, faces = suzanne()
    camera = _truth()
    result = EngineResult(meshes=[MeshData("m", vertices, faces.astype(np.int32))], stats={"camera": camera.to_dict()})
    _write(BatchJob(images=[], output=tmp_path, camera_json=True), "m", result)
    gltf = pygltflib.GLTF2().load(str(tmp_path / "m.glb"))
    (cam,) = gltf.cameras
    node = next(n for n in gltf.nodes if n.camera == 0)
    assert cam.type == "perspective" and cam.perspective.aspectRatio == pytest.approx(1.2)
    matrix = np.array(node.matrix).reshape(4, 4).T  # column-major, glTF's +Y-up world
    x, y, z = camera.center
    np.testing.assert_allclose(matrix[:3, 3], [x, z, -y], atol=1e-9)
    assert gltf.nodes.index(node) in gltf.scenes[gltf.scene].nodes
