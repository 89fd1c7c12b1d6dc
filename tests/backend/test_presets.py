"""Speed presets of the hi3dgen engine: the Heun sampler, int8 quantisation, the preset rule, and official
being exactly the path without a preset (tiny random weights)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.engines.base import ParamSpec, validate_params
from backend.engines.hi3dgen import PARAMS
from backend.errors import BadInput
from backend.presets import GOVERNED, PRESETS
from backend.sampling import SamplerParams, flow_time_grid, forward_passes, sample_flow_euler
from backend.sampling_heun import (
    heun_forward_passes,
    sample_flow_heun,
    sample_flow_heun_views,
    sampler_forward_passes,
    views_sampler,
)
from backend.speed_options import resolve_quantize

from .test_sampling import ToyModel


class Decay(torch.nn.Module):
    """v = x, so dx/dt = x and the exact x(0) from x(1) is x(1) / e."""

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return x


def _errors(sampler, steps: int) -> float:
    x1 = torch.ones(1, 8, 2, 2, 2, dtype=torch.float64)
    cond = torch.zeros(1, 3, 4)
    out = sampler(Decay(), x1, cond, cond, steps=steps, cfg_strength=0.0, rescale_t=1.0)
    return float((out - x1 / math.e).abs().max())


def test_heun_is_second_order_and_beats_euler_at_equal_forwards():
    heun = [_errors(sample_flow_heun, n) for n in (4, 8, 16)]
    euler = [_errors(sample_flow_euler, n) for n in (8, 16, 32)]
    assert heun[0] / heun[1] == pytest.approx(4.0, rel=0.15) and heun[1] / heun[2] == pytest.approx(4.0, rel=0.1)
    assert euler[0] / euler[1] == pytest.approx(2.0, rel=0.1)
    assert all(h < e / 5 for h, e in zip(heun, euler))  # n Heun steps vs 2n Euler steps: the same forwards


def test_heun_guidance_counts_and_batching_match_the_euler_semantics():
    model = ToyModel()
    x = torch.randn(1, 8, 4, 4, 4, generator=torch.Generator().manual_seed(3))
    cond, neg = torch.randn(1, 5, 16, generator=torch.Generator().manual_seed(4)), torch.zeros(1, 5, 16)
    kw = dict(steps=5, cfg_strength=3.0, cfg_interval=(0.5, 1.0), rescale_t=3.0)
    separate = sample_flow_heun(model, x, cond, neg, batch_cfg=False, **kw)
    assert model.calls == heun_forward_passes(SamplerParams(5, 3.0)) == 17
    batched = sample_flow_heun(model, x, cond, neg, batch_cfg=True, **kw)
    assert torch.allclose(batched, separate, atol=1e-5)
    # guidance 0: every evaluation is the plain conditional one
    plain = sample_flow_heun(model, x, cond, neg, steps=3, cfg_strength=0.0, batch_cfg=False)
    model.calls = 0
    sample_flow_heun(model, x, cond, neg, steps=3, cfg_strength=0.0, batch_cfg=False)
    assert model.calls == 6 and torch.isfinite(plain).all()
    assert sampler_forward_passes("euler", SamplerParams(50, 3.0)) == forward_passes(SamplerParams(50, 3.0)) == 88
    assert sampler_forward_passes("heun", SamplerParams(1, 3.0)) == 3  # t = 1 guided, t = 0 not


def test_heun_views_one_view_is_single_view_and_callback_per_step():
    model = ToyModel()
    x = torch.randn(1, 8, 2, 2, 2, generator=torch.Generator().manual_seed(5))
    conds = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(6))
    neg = torch.zeros(1, 5, 16)
    one = sample_flow_heun_views(model, x, conds[:1], neg, steps=3, cfg_strength=2.0, batch_cfg=False)
    assert torch.equal(one, sample_flow_heun(model, x, conds[:1], neg, steps=3, cfg_strength=2.0, batch_cfg=False))
    for mode in ("stochastic", "multidiffusion"):
        seen: list[tuple[int, int]] = []
        out = sample_flow_heun_views(model, x, conds, neg, mode=mode, steps=3, cfg_strength=2.0,
                                     callback=lambda i, n, seen=seen: seen.append((i, n)))
        assert seen == [(1, 3), (2, 3), (3, 3)] and torch.isfinite(out).all()
    with pytest.raises(ValueError):
        views_sampler("rk4")
    assert len(flow_time_grid(3, 3.0)) == 4


def test_int8_covers_every_linear_and_stays_close_to_float32():
    from backend.models.configs import VARIANTS
    from backend.models.loading import build_network
    from backend.quant import quantize_int8, quantized_linear_count

    torch.manual_seed(0)
    model = build_network(VARIANTS["tiny_ss_flow"], "cpu").eval()
    with torch.no_grad():  # random weights small enough to keep activations moderate
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.05)
    x, t, cond = torch.randn(1, 8, 16, 16, 16), torch.tensor([700.0]), torch.randn(1, 7, 32)
    with torch.no_grad():
        reference = model(x, t, cond)
        q = quantize_int8(model)
        out = q(x, t, cond)
    quantized, plain = quantized_linear_count(q)
    assert quantized == sum(isinstance(m, torch.nn.Linear) for m in model.blocks.modules())
    assert plain == sum(isinstance(m, torch.nn.Linear) for m in model.modules()) - quantized  # outside blocks
    assert quantized_linear_count(model) == (0, quantized + plain)  # the float32 model is untouched
    deviation = float((out - reference).norm() / reference.norm())
    assert 0.0 < deviation < 0.05, deviation


def test_int8_is_refused_off_the_cpu_and_int8_on_cpu_falls_back():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_quantize("int8", cpu, torch.float32) == "int8"
    assert resolve_quantize("int8_on_cpu", cpu, torch.float32) == "int8"
    assert resolve_quantize("int8_on_cpu", cuda, torch.float16) == "none"
    assert resolve_quantize("int8_on_cpu", cpu, torch.bfloat16) == "none"
    for device, dtype in ((cuda, torch.float32), (torch.device("mps"), torch.float32), (cpu, torch.bfloat16)):
        with pytest.raises(BadInput) as info:
            resolve_quantize("int8", device, dtype)
        assert info.value.hint
    with pytest.raises(BadInput):
        resolve_quantize("int4", cpu, torch.float32)


def test_a_preset_fills_only_what_the_request_leaves_out():
    defaults = validate_params(PARAMS, {})
    assert defaults["preset"] == "official"
    assert validate_params(PARAMS, {"preset": "official"}) == defaults
    draft = validate_params(PARAMS, {"preset": "draft"})
    assert {k: draft[k] for k in GOVERNED} == PRESETS["draft"].values
    assert draft["normal_resolution"] == 512 and defaults["normal_resolution"] == 768  # NiRNE's size too
    assert validate_params(PARAMS, {"preset": "draft", "normal_resolution": 768})["normal_resolution"] == 768
    mixed = validate_params(PARAMS, {"preset": "draft", "ss_steps": 20, "sampler": "euler"})
    assert (mixed["ss_steps"], mixed["sampler"]) == (20, "euler")
    assert mixed["slat_steps"] == PRESETS["draft"].values["slat_steps"]
    standard = validate_params(PARAMS, {"preset": "standard"})
    untouched = {k: v for k, v in defaults.items() if k not in GOVERNED}
    assert {k: v for k, v in standard.items() if k not in GOVERNED} == {**untouched, "preset": "standard"}
    for bad in ("fast", 3, None, True):
        with pytest.raises(BadInput):
            validate_params(PARAMS, {"preset": bad})
    with pytest.raises(BadInput):  # explicit values are still checked
        validate_params(PARAMS, {"preset": "draft", "ss_steps": 0})


def test_every_preset_names_valid_values_and_its_cost():
    specs: dict[str, ParamSpec] = {p.name: p for p in PARAMS}
    official = {s: specs[s].default for s in GOVERNED}
    assert PRESETS["official"].values == official
    for preset in PRESETS.values():
        assert set(preset.values) == set(GOVERNED)
        assert all(specs[k].check(v) == v for k, v in preset.values.items())
        ss, slat = preset.forwards()
        assert f"{ss} + {slat} " in preset.summary, preset.summary
    assert PRESETS["official"].forwards() == (88, 11)


def _request(params: dict):
    from backend.engines.base import EngineRequest
    from backend.images import LoadedImage

    from .test_preprocess import _dome_normal_map

    h = w = 64
    yy, xx = np.mgrid[0:h, 0:w]
    alpha = np.clip((24.0 - np.hypot(yy - 32.0, xx - 32.0)) * 128.0, 0, 255)
    image = LoadedImage(np.dstack([np.full((h, w, 3), 0.5), alpha / 255]).astype(np.float32), True, "RGBA")
    given = LoadedImage(_dome_normal_map(h, w, alpha.astype(np.uint8)).astype(np.float32) / 255, True, "RGBA")
    off = {"align": False, "refine": False, "texture": False, "remove_floaters": False}
    return EngineRequest(image, "disc", 1, validate_params(PARAMS, {**off, **params}), placement_name="cpu",
                         normal_map=given)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory):
    from backend.engines.hi3dgen import Hi3DGenEngine
    from backend.settings import BackendSettings

    from .tiny_weights import write_tiny_weights

    root: Path = write_tiny_weights(tmp_path_factory.mktemp("weights"))
    return Hi3DGenEngine(BackendSettings(weights_dir=str(root), precision="fp32"))


def test_official_is_bit_for_bit_the_path_without_a_preset(engine, one_torch_thread):
    from backend.jobs import JobContext

    # validate_params gives official exactly the defaults (test above); here the engine's path with the preset
    # set is the plain one, at fewer steps than the official 50 + 6 to keep the test short
    short = {"ss_steps": 4, "slat_steps": 2}
    plain = engine.generate(_request(short), JobContext()).meshes[0]
    official = engine.generate(_request({**short, "preset": "official"}), JobContext()).meshes[0]
    assert np.array_equal(plain.vertices, official.vertices) and np.array_equal(plain.faces, official.faces)
    assert engine._int8 is None  # official never quantises


def test_draft_runs_its_steps_and_int8_on_the_cpu(engine, one_torch_thread, monkeypatch):
    import backend.sampling as sampling
    from backend.jobs import JobContext

    grids: list[tuple[int, float]] = []
    time_grid = sampling.flow_time_grid
    monkeypatch.setattr(sampling, "flow_time_grid", lambda n, r: grids.append((n, r)) or time_grid(n, r))
    steps: list[tuple[str, int, int]] = []
    ctx = JobContext(report=lambda stage, step, total, message: steps.append((stage, step, total)))
    mesh = engine.generate(_request({"preset": "draft"}), ctx).meshes[0]
    assert len(mesh.faces) > 0
    v = PRESETS["draft"].values
    ss, slat = v["ss_steps"], v["slat_steps"]
    assert ("structure", ss, ss) in steps and ("latent", slat, slat) in steps
    assert grids == [(ss, v["ss_rescale_t"]), (slat, 3.0)]  # its own structure grid, the release's latent one
    assert engine._int8 is not None and engine._int8[0] is engine._geometry


def test_int8_on_a_gpu_is_refused_before_any_model_loads(monkeypatch):
    import backend.devices as devices
    from backend.devices import Placement
    from backend.engines.hi3dgen import Hi3DGenEngine
    from backend.jobs import JobContext
    from backend.settings import BackendSettings

    engine = Hi3DGenEngine(BackendSettings())
    monkeypatch.setattr(devices, "choose_placement", lambda name, precision: Placement(torch.device("cuda"),
                                                                                       torch.float16))
    monkeypatch.setattr(engine, "_require_weights", lambda request, geometry: None)
    monkeypatch.setattr(engine, "_models", lambda request, ctx: pytest.fail("models loaded"))
    with pytest.raises(BadInput) as info:
        engine.generate(_request({"quantize": "int8"}), JobContext())
    assert "CPU only" in info.value.message


def test_cli_preset_becomes_a_parameter_that_an_explicit_param_overrides(tmp_path, monkeypatch):
    import backend.batch as batch
    from backend.cli import main

    jobs = []
    monkeypatch.setattr(batch, "run_batch", lambda job, settings, show_progress: jobs.append(job) or [])
    image = str(tmp_path / "x.png")
    assert main(["generate", image, "--engine", "hi3dgen", "--preset", "draft", "-o", str(tmp_path)]) == 0
    assert main(["generate", image, "--engine", "hi3dgen", "--preset", "draft", "--param", "preset=standard",
                 "--param", "ss_steps=9", "-o", str(tmp_path)]) == 0
    assert main(["generate", image, "--engine", "hi3dgen", "-o", str(tmp_path)]) == 0
    assert [j.params for j in jobs] == [{"preset": "draft"}, {"preset": "standard", "ss_steps": 9}, {}]
    assert main(["generate", image, "--preset", "draft", "-o", str(tmp_path)]) == 2  # relief has no presets
    with pytest.raises(SystemExit):
        main(["generate", image, "--engine", "hi3dgen", "--preset", "fast"])


def test_threads_are_set_once_at_the_entry_point_and_bad_counts_refused(monkeypatch, capsys):
    from backend.cli import main
    from backend.threads import apply_threads

    before = torch.get_num_threads()
    try:
        apply_threads(1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    for bad in (0, -1, True, 2.0):
        with pytest.raises(BadInput):
            apply_threads(bad)
    assert main(["info", "--threads", "-2"]) == 2 and "thread count" in capsys.readouterr().err
    monkeypatch.setenv("HI3DGEN_THREADS", "many")
    assert main(["info"]) == 2 and "HI3DGEN_THREADS" in capsys.readouterr().err
