"""The align step of the hi3dgen engine (in process, the geometry networks replaced by a known mesh) and the
CLI's ``--camera-json`` output."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from backend.camera import Camera, look_at, make_camera, rotation_angle
from backend.render.shade import render_normal_map
from tests.backend.shapes import suzanne

pytestmark = pytest.mark.usefixtures("one_torch_thread")


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
    params = validate_params(PARAMS, {"remove_floaters": False, "refine": False, "texture": False})  # tested below
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


def _refine_engine(monkeypatch, start: np.ndarray, faces: np.ndarray, truth: Camera, iou: float):
    """The engine with geometry replaced by ``start`` and the alignment by ``truth`` scored ``iou``."""
    import backend.pipelines.hi3dgen as geometry
    import backend.refine.refine as refine
    from backend.engines.hi3dgen import Hi3DGenEngine
    from backend.settings import BackendSettings

    monkeypatch.setattr(geometry, "generate_geometry", lambda models, condition, params, ctx: (start, faces, {}))
    engine = Hi3DGenEngine(BackendSettings())
    monkeypatch.setattr(engine, "_models", lambda request, ctx: None)
    monkeypatch.setattr(engine, "_require_weights", lambda request, geometry: None)
    scores = {"iou": iou, "normal_agreement": 0.95}
    monkeypatch.setattr(engine, "_align", lambda *a: {**truth.to_dict(), "alignment": scores})
    quick = refine.RefineConfig(iterations=30, size=96)
    real = refine.refine_mesh
    monkeypatch.setattr(refine, "refine_mesh", lambda *a, **k: real(*a, config=quick, **k))
    return engine


@pytest.mark.parametrize("iou", [0.97, 0.5], ids=["confident", "not-confident"])
def test_generate_refines_the_mesh_only_after_a_confident_alignment(monkeypatch, iou: float):
    from backend.engines.base import EngineRequest, validate_params
    from backend.engines.hi3dgen import PARAMS
    from backend.images import LoadedImage
    from backend.jobs import JobContext
    from backend.mesh.cleanup import CleanupOptions, clean_mesh
    from tests.backend.shapes import bumpy_sphere, smoothed

    vertices, faces = bumpy_sphere(3)
    start = smoothed(vertices, faces, iterations=10)
    truth = _truth()
    mask, normals, _ = render_normal_map(vertices, faces, truth)
    alpha = mask.astype(np.float32)[..., None]
    image = LoadedImage(np.dstack([np.full((*mask.shape, 3), 0.6, np.float32), alpha]), True, "RGBA")
    given = LoadedImage(np.dstack([(normals + 1) / 2, alpha]).astype(np.float32), True, "RGBA")
    engine = _refine_engine(monkeypatch, start, faces, truth, iou)
    stages: list[str] = []
    ctx = JobContext(report=lambda stage, step, total, message: stages.append(stage))
    params = validate_params(PARAMS, {"remove_floaters": False, "texture": False})  # the bake: test_bake.py
    assert params["refine"] is True, "refinement is on by default"
    result = engine.generate(EngineRequest(image, "ball", 0, params, normal_map=given), ctx)
    info = json.loads(json.dumps(result.stats["refine"]))  # travels as JSON in the done message
    (mesh,) = result.meshes
    cleaned = clean_mesh(start, faces, CleanupOptions(remove_floaters=False))[0]  # what the engine refines
    if iou < 0.85:
        assert info["applied"] is False and info["confident"] is False and "IoU" in info["reason"]
        assert "refine" not in stages
        np.testing.assert_allclose(mesh.vertices, cleaned, atol=1e-6)
        return
    assert "refine" in stages and info["confident"] and info["applied"] and info["iterations"] == 30
    assert info["angle_deg_after"] < info["angle_deg_before"]
    assert np.abs(mesh.vertices - cleaned).max() > 1e-4
    assert mesh.normals is not None and mesh.normals.shape == mesh.vertices.shape


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
