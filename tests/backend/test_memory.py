"""The ``memory`` setting: offloading gives the same mesh as keeping every network resident, each stage moves
only its own networks, and the setting is checked where it enters (settings, CLI, engine parameter)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from backend.devices import Placement
from backend.errors import BadInput
from backend.jobs import JobContext
from backend.memory import StageMemory, move_module
from backend.models.testing import write_dinov2_folder, write_release_folder
from backend.pipelines.hi3dgen import GeometryModels, GeometryParams, generate_geometry, networks
from backend.settings import BackendSettings

CPU = Placement(torch.device("cpu"), torch.float32)
PARAMS = GeometryParams(seed=3, ss_steps=2, slat_steps=2)


class SmallStructure(torch.nn.Module):
    """The real structure decoder, its occupancy kept inside an 8^3 box: a few hundred voxels, a fast test."""

    def __init__(self, decoder: torch.nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        logits = self.decoder(z)  # [1, 1, 64, 64, 64]
        box = torch.full_like(logits, -1.0)
        box[..., 28:36, 28:36, 28:36] = logits[..., 28:36, 28:36, 28:36].abs() + 0.1
        return box


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root: Path = tmp_path_factory.mktemp("weights")
    write_release_folder(root / "trellis-normal")
    write_dinov2_folder(root / "dinov2")
    return root


def load(weights: Path, memory: str) -> GeometryModels:
    models = GeometryModels.load(weights / "trellis-normal", weights / "dinov2", CPU, memory=memory)
    models.ss_decoder = SmallStructure(models.ss_decoder)
    return models


def picture() -> np.ndarray:
    return (np.random.default_rng(0).random((48, 48, 3)) * 255).astype(np.uint8)


def test_offloaded_pipeline_gives_the_resident_mesh_bit_for_bit(weights, one_torch_thread):
    meshes = {}
    for mode in ("resident", "offload"):
        models = load(weights, mode)
        meshes[mode] = generate_geometry(models, picture(), PARAMS, JobContext())[:2]
        assert models.memory is not None and models.memory.log == [
            ("condition", 1), ("structure", 2), ("latent", 1), ("decode", 1)]  # one stage's networks at a time
    assert len(meshes["resident"][1]) > 0
    for a, b in zip(meshes["resident"], meshes["offload"], strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_moving_a_network_keeps_its_mixed_precision_and_values():
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    net[0].half()  # the torso in fp16, the norm in fp32, as the release casts them
    net.register_buffer("table", torch.arange(3.0))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    first = net[0].weight
    move_module(net, torch.device("cpu"))
    after = net.state_dict()
    assert {k: v.dtype for k, v in after.items()} == {k: v.dtype for k, v in before.items()}
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert net[0].weight is first  # already there: nothing replaced


def test_offload_keeps_networks_home_between_stages_and_switch_changes_mode():
    memory = StageMemory(torch.device("cpu"), "offload")
    assert memory.home == torch.device("cpu")
    net = torch.nn.Linear(2, 2)
    with memory.stage("s", net):
        assert net.weight.device == memory.device
    memory.switch("resident", net)
    assert memory.mode == "resident" and memory.home == memory.device
    with pytest.raises(BadInput):
        memory.switch("everything", net)


@pytest.mark.parametrize(("overrides", "words"), [
    ({"memory": "lots"}, "memory mode"), ({"memory_budget_gb": -1}, "GiB"), ({"memory_budget_gb": "x"}, "GiB"),
    ({"memory_budget_gb": float("nan")}, "GiB")])
def test_wrong_memory_settings_are_hinted_errors(overrides, words):
    with pytest.raises(BadInput) as info:
        BackendSettings.from_env(**overrides)
    assert words in info.value.message and info.value.hint


def test_memory_settings_from_the_environment_and_flags(monkeypatch):
    from backend.cli import main

    monkeypatch.setenv("HI3DGEN_MEMORY", "resident")
    monkeypatch.setenv("HI3DGEN_MEMORY_BUDGET", "5.5")
    settings = BackendSettings.from_env()
    assert settings.memory == "resident" and settings.memory_budget_gb == 5.5
    assert BackendSettings.from_env(memory="offload").memory == "offload"
    assert main(["info", "--memory-budget", "-3"]) == 2


def test_the_engine_parameter_picks_the_mode(weights):
    from backend.engines.base import validate_params
    from backend.engines.hi3dgen import PARAMS as ENGINE_PARAMS
    from backend.engines.hi3dgen import Hi3DGenEngine

    engine = Hi3DGenEngine(BackendSettings(memory="resident"))
    request = type("R", (), {"params": validate_params(ENGINE_PARAMS, {})})()
    assert engine._memory_mode(request) == "resident"  # auto: the backend's setting
    request.params = validate_params(ENGINE_PARAMS, {"memory": "offload"})
    assert engine._memory_mode(request) == "offload"
    with pytest.raises(BadInput):
        validate_params(ENGINE_PARAMS, {"memory": "some"})
    models = load(weights, "resident")
    assert models.memory is not None
    models.memory.switch("offload", *networks(models))
    assert models.memory.mode == "offload"


# ------------------------------------------------------------------ the plan and the refusal


def test_the_plan_counts_every_weight_and_offload_needs_less(weights):
    from backend.memory_plan import GIB, geometry_weight_files, plan_run

    files = geometry_weight_files(weights / "trellis-normal", weights / "dinov2")
    plans = {mode: plan_run(files, mode=mode, dtype_bytes=2, batch=2) for mode in ("offload", "resident")}
    stages = {s.name: s for s in plans["resident"].stages}
    assert set(stages) == {"condition", "structure", "latent", "decode"}
    models = load(weights, "resident")
    real = {"condition": [models.dinov2], "latent": [models.slat_flow], "decode": [models.mesh_decoder]}
    for name, nets in real.items():  # float32 here: twice the 2-byte plan, DINOv2 aside (float32 in both)
        count = sum(p.numel() for n in nets for p in n.parameters())
        assert stages[name].weights == count * (4 if name == "condition" else 2)
    assert plans["offload"].peak < plans["resident"].peak
    assert "GiB" in plans["offload"].describe() and plans["offload"].as_stats()["mode"] == "offload"
    # the activation model is the release networks' (official widths), whatever the weights' size
    assert plans["offload"].peak >= max(s.activations for s in plans["offload"].stages) > GIB


def test_a_plan_over_the_budget_is_refused_with_what_to_change(weights):
    from backend.errors import InsufficientMemory
    from backend.memory_plan import check_plan, geometry_weight_files, plan_run

    files = geometry_weight_files(weights / "trellis-normal", weights / "dinov2")
    plan = plan_run(files, mode="resident", dtype_bytes=4, batch=2)
    check_plan(plan, None, dtype_bytes=4)  # not checked (CPU without a budget)
    check_plan(plan, 2 * plan.peak, dtype_bytes=4)
    with pytest.raises(InsufficientMemory) as info:
        check_plan(plan, plan.peak // 2, dtype_bytes=4, context="cli")
    assert info.value.code == "insufficient_memory"
    assert "GiB" in info.value.message and "--memory offload" in info.value.hint and "fp16" in info.value.hint
    with pytest.raises(InsufficientMemory) as info:
        check_plan(plan, plan.peak // 2, dtype_bytes=4)
    assert "Memory to Offload" in info.value.hint  # the add-on's words


def test_the_cuda_budget_is_the_free_memory_plus_what_torch_and_this_engine_hold(monkeypatch):
    from backend.memory_plan import GIB, device_budget

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (3 * GIB, 8 * GIB))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: GIB)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: GIB // 2)
    assert device_budget(torch.device("cuda", 0), 0.0, held=GIB) == 3 * GIB + GIB // 2 + GIB
    assert device_budget(torch.device("cuda", 0), 2.0) == 2 * GIB
    assert device_budget(torch.device("cpu"), 0.0) is None  # the CPU pages instead: not enforced


def test_the_real_voxel_count_is_checked_again_before_the_latent_stage(weights, one_torch_thread):
    seen: list[tuple[str, int]] = []
    models = load(weights, "offload")
    assert models.memory is not None
    models.memory.guard = lambda stage, voxels: seen.append((stage, voxels))
    generate_geometry(models, picture(), PARAMS, JobContext())
    assert len(seen) == 1 and seen[0][0] == "latent" and 0 < seen[0][1] <= 8**3


def test_the_cli_refuses_a_run_that_cannot_fit_with_its_own_exit_status(weights, tmp_path, capsys):
    from backend.cli import EXIT_MEMORY, main
    from tests.backend.conftest import png_bytes
    from tests.backend.tiny_weights import write_yoso_folder

    write_yoso_folder(weights / "yoso-normal")
    image = tmp_path / "blob.png"
    image.write_bytes(png_bytes(np.full((32, 32, 3), 200, np.uint8)))
    code = main(["generate", str(image), "--engine", "hi3dgen", "--weights-dir", str(weights), "-o",
                 str(tmp_path / "out"), "--memory", "resident", "--memory-budget", "0.0001"])
    err = capsys.readouterr().err
    assert code == EXIT_MEMORY
    assert "not enough device memory" in err and "--memory-budget" in err and "GiB" in err
    assert "--memory offload" not in err  # on the CPU every network stays in RAM: offloading would not help
    assert not list((tmp_path / "out").glob("*.glb"))


def test_the_protocol_reports_the_refusal_as_its_own_error_code(weights):
    from backend import protocol as P
    from tests.backend.conftest import BackendProcess, blob_rgba, png_bytes
    from tests.backend.tiny_weights import write_yoso_folder

    assert "insufficient_memory" in P.ERROR_CODES
    write_yoso_folder(weights / "yoso-normal")
    proc = BackendProcess(env={"HI3DGEN_WEIGHTS": str(weights), "HF_HUB_OFFLINE": "1",
                               "HI3DGEN_MEMORY_BUDGET": "0.0001"})
    try:
        proc.expect(P.Hello)
        image = np.frombuffer(png_bytes(blob_rgba(64)), np.uint8)
        proc.send(P.Generate(engine="hi3dgen", seed=0, params={"memory": "offload"}, image_bytes=image), 7)
        result = proc.collect(7, timeout=120)
    finally:
        proc.close()
    error = result["error"]
    assert error is not None and error.code == "insufficient_memory"
    assert "GiB" in error.message and error.hint and "Traceback" not in error.message


def test_nirne_offloads_by_sub_stage_and_gives_the_resident_normals(tmp_path):
    from backend.nirne.pipeline import NirneEstimator
    from tests.backend.tiny_weights import write_yoso_folder

    folder = write_yoso_folder(tmp_path / "yoso-normal")
    image = np.random.default_rng(1).random((40, 40, 4)).astype(np.float32)
    out = {}
    for mode in ("resident", "offload"):
        estimator = NirneEstimator.load(folder, CPU, processing_resolution=64, memory=mode)
        out[mode] = estimator(image, None)
        assert estimator.memory is not None
        assert estimator.memory.log == [("normals-encode", 1), ("normals", 2), ("normals-decode", 1)]
    assert np.array_equal(out["resident"], out["offload"])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_layer_norm_by_row_chunks_gives_the_same_numbers(monkeypatch, dtype):
    import backend.nn.norms as norms

    norm = norms.LayerNorm32(24, eps=1e-6)
    torch.nn.init.normal_(norm.weight, generator=torch.Generator().manual_seed(0))
    x = torch.randn(101, 24, generator=torch.Generator().manual_seed(1)).to(dtype)
    whole = norm(x)
    monkeypatch.setattr(norms, "HALF_ROWS", 16)  # 7 chunks, the last one short
    chunked = norm(x)
    assert chunked.dtype == dtype and torch.equal(chunked, whole)
