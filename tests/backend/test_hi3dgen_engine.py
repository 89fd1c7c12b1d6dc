"""The hi3dgen engine end to end on tiny random networks in the releases' folder layouts, through the
real ``python -m backend serve`` subprocess: handshake, normals only, generation, reproducibility, cancel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from backend import protocol as P
from backend.models.testing import write_dinov2_folder, write_release_folder

from .conftest import BackendProcess, assert_stopped_at_next_step, blob_rgba, cancel_with_fence, png_bytes
from .test_nirne import write_release as write_yoso_folder

FAST = {"ss_steps": 3, "slat_steps": 2, "normal_resolution": 64}


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("weights")
    write_release_folder(root / "trellis-normal")
    write_dinov2_folder(root / "dinov2")
    write_yoso_folder(root / "yoso-normal")
    return root


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
