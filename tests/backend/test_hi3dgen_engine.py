"""The hi3dgen engine end to end on tiny random networks in the releases' folder layouts, through the
real ``python -m backend serve`` subprocess: handshake, normals only, generation, reproducibility, cancel; and
in process, what a given normal map makes of the condition image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from backend import protocol as P

from .conftest import BackendProcess, assert_stopped_at_next_step, blob_rgba, cancel_with_fence, png_bytes
from .tiny_weights import write_tiny_weights

FAST = {"ss_steps": 3, "slat_steps": 2, "normal_resolution": 64, "align": False}


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def server(weights_dir: Path):
    proc = BackendProcess(env={"HI3DGEN_WEIGHTS": str(weights_dir), "HF_HUB_OFFLINE": "1"})
    proc.hello, _ = proc.expect(P.Hello)
    yield proc
    proc.close()


def _image() -> np.ndarray:
    return np.frombuffer(png_bytes(blob_rgba(128)), np.uint8)


def test_handshake_reports_weights(server):
    engine = next(e for e in server.hello.engines if e["name"] == "hi3dgen")
    assert engine["available"] and engine["weights_present"] and engine["missing"] == []


def test_normals_only_through_the_protocol(server):
    server.send(P.Normals(engine="hi3dgen", params={"normal_resolution": 64}, image_bytes=_image()), 1)
    out = server.collect(1, timeout=120)
    assert out["error"] is None, out["error"]
    nm = out["normal_map"]
    assert (nm.height, nm.width) == (128, 128) and nm.pixels.shape == (128, 128, 4)  # the input's size
    rgba = nm.pixels.astype(np.float32) / 65535.0
    inside = rgba[..., 3] > 0.5
    n = rgba[..., :3] * 2 - 1
    assert inside.any() and np.allclose(np.linalg.norm(n[inside], axis=-1), 1.0, atol=2e-3)


def _generate(server, rid: int, seed: int = 1) -> dict:
    server.send(P.Generate(engine="hi3dgen", seed=seed, params=FAST, image_bytes=_image()), rid)
    return server.collect(rid, timeout=300)


def test_generate_gives_a_valid_mesh_and_the_same_seed_the_same_mesh(server):
    first, second = _generate(server, 2), _generate(server, 3)
    assert first["error"] is None, first["error"]
    stages = {p.stage for p in first["progress"]}
    assert {"structure", "latent", "surface"} <= stages
    a, b = first["meshes"][0], second["meshes"][0]
    assert len(a["faces"]) > 0
    tm = trimesh.Trimesh(a["vertices"], a["faces"], process=False)
    assert tm.is_winding_consistent
    assert np.array_equal(a["faces"], b["faces"]) and np.allclose(a["vertices"], b["vertices"])


def test_cancel_mid_sampling_then_next_request_works(server):
    """A cancel stops the structure sampler at its next step boundary, however long a step takes."""
    server.send(P.Generate(engine="hi3dgen", seed=2, params={**FAST, "ss_steps": 200}, image_bytes=_image()), 4)
    while True:
        msg, _ = server.next(120)
        if isinstance(msg, P.Progress) and msg.stage == "structure" and msg.step >= 1:
            break
    assert_stopped_at_next_step(cancel_with_fence(server, 4), 4, msg)
    assert _generate(server, 5)["done"] is not None


def test_models_stay_loaded_until_released(server):
    def loads(out: dict) -> bool:
        assert out["done"] is not None, out["error"]
        return any(p.stage == "loading" for p in out["progress"])

    _generate(server, 20)  # whatever earlier tests left: loaded after this
    assert not loads(_generate(server, 21)), "a second request reuses the loaded networks"
    server.send(P.ReleaseModels(), 22)
    assert loads(_generate(server, 23)), "after ReleaseModels they load again"
    assert not loads(_generate(server, 24))


def test_the_face_budget_is_honoured(server):
    """``decimate_faces`` (the hi3dgen engine's face budget; the relief's is ``faces``) caps the cleaned mesh."""
    full = _generate(server, 30)["meshes"][0]["faces"]
    assert len(full) > 200, "the tiny networks' surface is big enough to decimate"
    target = len(full) // 3
    server.send(P.Generate(engine="hi3dgen", seed=1, params={**FAST, "decimate_faces": target},
                           image_bytes=_image()), 31)
    out = server.collect(31, timeout=300)
    assert out["error"] is None, out["error"]
    faces = out["meshes"][0]["faces"]
    assert 0.8 * target <= len(faces) <= target


def test_a_given_rgba_normal_map_reaches_the_encoder_as_the_release_resizes_it(monkeypatch):
    """The engine's own path (no networks): the condition image is the premultiplied resize on white."""
    import backend.pipelines.hi3dgen as geometry
    from backend.engines.base import EngineRequest, validate_params
    from backend.engines.hi3dgen import PARAMS, Hi3DGenEngine
    from backend.images import LoadedImage
    from backend.jobs import JobContext
    from backend.preprocess import square_crop_with_frame
    from backend.settings import BackendSettings

    from .test_preprocess import _dome_normal_map, _release_condition

    class Seen(Exception):
        pass

    def capture(models, condition, params, ctx):
        seen.append(condition)
        raise Seen

    seen: list[np.ndarray] = []
    monkeypatch.setattr(geometry, "generate_geometry", capture)
    h, w = 120, 90
    yy, xx = np.mgrid[0:h, 0:w]
    alpha = np.clip((30.0 - np.hypot(yy - 60.0, xx - 45.0)) * 128.0, 0, 255)  # a disc with a soft edge
    image = LoadedImage(np.dstack([np.full((h, w, 3), 0.5), alpha / 255]).astype(np.float32), True, "RGBA")
    normal_map = _dome_normal_map(h, w, alpha.astype(np.uint8))
    given = LoadedImage(normal_map.astype(np.float32) / 255, has_alpha=True, source_mode="RGBA")
    engine = Hi3DGenEngine(BackendSettings())
    monkeypatch.setattr(engine, "_models", lambda request, ctx: None)
    monkeypatch.setattr(engine, "_require_weights", lambda request, geometry: None)  # no weights here
    request = EngineRequest(image, "disc", 0, validate_params(PARAMS, {}), normal_map=given)
    with pytest.raises(Seen):
        engine.generate(request, JobContext())
    _, mask, frame = square_crop_with_frame(image)
    expected = _release_condition(normal_map, frame.crop, mask).astype(int)
    assert np.abs(seen[0].astype(int) - expected).max() <= 1


def test_nirne_runs_at_768_unless_asked(monkeypatch):
    """``normal_resolution`` defaults to the release's 768, changes one request only, and the shared estimator
    (the relief engine's too) stays at 768."""
    import backend.nirne.pipeline as nirne
    from backend.engines.base import EngineRequest, validate_params
    from backend.engines.hi3dgen import PARAMS, Hi3DGenEngine
    from backend.images import LoadedImage
    from backend.jobs import JobContext
    from backend.settings import BackendSettings

    used: list[int] = []

    def fake_estimate(models, image, mask, *, processing_resolution, ctx=None):
        used.append(processing_resolution)
        return np.dstack([np.zeros((*image.shape[:2], 2)), np.ones(image.shape[:2])]).astype(np.float32)

    monkeypatch.setattr(nirne, "estimate_normals", fake_estimate)
    engine = Hi3DGenEngine(BackendSettings())
    engine._nirne = nirne.NirneEstimator(models=None)  # as loaded: no resolution given
    image = LoadedImage(blob_rgba(64).astype(np.float32) / 255, True, "RGBA")
    for params in ({}, {"normal_resolution": 512}, {}):
        engine.normals(EngineRequest(image, "blob", 0, validate_params(PARAMS, params)), JobContext())
    engine.nirne_if_present("auto")(image.rgba, None)
    assert used == [768, 512, 768, 768]
