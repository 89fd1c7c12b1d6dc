"""Multi-view conditioning: the samplers' two modes on a stub model, the geometry pipeline on tiny random
networks in the release layout, and the engine's handling of each view (different sizes, no foreground)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.devices import Placement
from backend.jobs import JobContext
from backend.sampling import flow_time_grid, guided_velocity, sample_flow_euler, sample_flow_euler_views, view_order

from .conftest import blob_rgba

CPU = Placement(torch.device("cpu"), torch.float32)


class Recorder:
    """A stub velocity depending on x, t and the condition's mean; records every call's condition rows."""

    def __init__(self) -> None:
        self.seen: list[list[float]] = []

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        rows = cond.mean(dim=(1, 2))  # [B]
        self.seen.append([round(float(r), 4) for r in rows])
        per_row = x.reshape(len(rows), -1)
        return (0.3 * per_row * (t / 1000.0).view(-1, 1) + rows.view(-1, 1)).reshape(x.shape)


def _views(*values: float) -> torch.Tensor:
    return torch.stack([torch.full((3, 4), v) for v in values])  # [V, 3, 4], mean = value


@pytest.mark.parametrize("batch_cfg", [False, True])
def test_multidiffusion_step_is_the_mean_of_the_single_view_velocities(batch_cfg):
    model, x, neg = Recorder(), torch.randn(1, 5), torch.zeros(1, 3, 4)
    a, b = _views(1.0), _views(-2.5)
    steps, w = 4, 3.0
    grid = flow_time_grid(steps, 3.0)
    out = sample_flow_euler_views(model, x, torch.cat([a, b]), neg, mode="multidiffusion", steps=steps,
                                  cfg_strength=w, batch_cfg=batch_cfg)
    expected = x.clone()
    for t_now, t_next in zip(grid[:-1], grid[1:]):  # per step: the average of the two single-view velocities
        t = torch.tensor([1000.0 * t_now])
        if 0.5 <= t_now <= 1.0:
            v = (guided_velocity(model, expected, t, a, neg, w, False)
                 + guided_velocity(model, expected, t, b, neg, w, False)) / 2
        else:
            v = (model(expected, t, a) + model(expected, t, b)) / 2
        expected = expected - (t_now - t_next) * v
    assert torch.allclose(out, expected, atol=1e-6)


def test_multidiffusion_with_identical_views_is_the_single_view_sample():
    model, x, neg, cond = Recorder(), torch.randn(1, 5), torch.zeros(1, 3, 4), _views(0.7)
    single = sample_flow_euler(model, x, cond, neg, steps=6, cfg_strength=3.0, batch_cfg=False)
    for n in (2, 3, 5):
        multi = sample_flow_euler_views(model, x, cond.repeat(n, 1, 1), neg, mode="multidiffusion", steps=6,
                                        cfg_strength=3.0, batch_cfg=False)
        assert torch.allclose(multi, single, atol=1e-6)


def test_stochastic_uses_the_views_in_turn():
    """Step i conditions on view i % V (TRELLIS's order); guided steps pair it with the negative."""
    assert view_order(7, 3) == [0, 1, 2, 0, 1, 2, 0]
    model, neg = Recorder(), torch.zeros(1, 3, 4)
    steps = 7
    sample_flow_euler_views(model, torch.randn(1, 5), _views(1.0, 2.0, 3.0), neg, mode="stochastic",
                            steps=steps, cfg_strength=0.0, batch_cfg=True)
    assert model.seen == [[1.0], [2.0], [3.0], [1.0], [2.0], [3.0], [1.0]]
    model.seen.clear()
    sample_flow_euler_views(model, torch.randn(1, 5), _views(1.0, 2.0), neg, mode="stochastic", steps=4,
                            cfg_strength=3.0, batch_cfg=True)
    guided = [0.5 <= t <= 1.0 for t in flow_time_grid(4, 3.0)[:-1]]
    assert model.seen == [[v, 0.0] if g else [v] for v, g in zip([1.0, 2.0, 1.0, 2.0], guided)]


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="stochastic"):
        sample_flow_euler_views(Recorder(), torch.randn(1, 5), _views(1.0, 2.0), torch.zeros(1, 3, 4),
                                mode="average", steps=2, cfg_strength=0.0)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from backend.models.testing import write_dinov2_folder, write_release_folder
    from backend.pipelines.hi3dgen import GeometryModels

    root = tmp_path_factory.mktemp("weights")
    write_release_folder(root / "trellis-normal")
    write_dinov2_folder(root / "dinov2")
    return GeometryModels.load(root / "trellis-normal", root / "dinov2", CPU)


def _normal_image(size: int = 64, tilt: float = 0.0) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    x, y = (xx - size / 2) / (size * 0.4) + tilt, -(yy - size / 2) / (size * 0.4)
    inside = x**2 + y**2 < 1
    n = np.dstack([x, y, np.sqrt(np.clip(1 - x**2 - y**2, 0, 1))])
    image = np.round((n + 1) / 2 * 255).astype(np.uint8)
    image[~inside] = 255
    return image


def test_identical_views_give_the_single_view_mesh_on_the_release_layout(tiny_models):
    """multidiffusion with N identical views (stochastic's is the single-view run by construction)."""
    from backend.pipelines.hi3dgen import GeometryParams, generate_geometry

    params = GeometryParams(seed=3, ss_steps=2, slat_steps=1, multiview_mode="multidiffusion")
    image = _normal_image()
    v1, f1, _ = generate_geometry(tiny_models, image, params, JobContext())
    v3, f3, _ = generate_geometry(tiny_models, [image, image, image], params, JobContext())
    assert len(f1) > 0 and np.array_equal(f1, f3)
    assert np.allclose(v1, v3, atol=1e-5)


def test_different_views_change_the_mesh_and_report_the_views(monkeypatch):
    """The engine path (no networks): every view is cropped and encoded on its own, whatever its size;
    a view with no foreground is refused naming the view."""
    import backend.pipelines.hi3dgen as geometry
    from backend.engines.base import EngineRequest, validate_params
    from backend.engines.hi3dgen import PARAMS, Hi3DGenEngine
    from backend.errors import BadInput
    from backend.images import LoadedImage
    from backend.settings import BackendSettings

    class Seen(Exception):
        pass

    seen: list = []

    def capture(models, condition, params, ctx):
        seen.append((condition, params))
        raise Seen

    monkeypatch.setattr(geometry, "generate_geometry", capture)
    engine = Hi3DGenEngine(BackendSettings())
    monkeypatch.setattr(engine, "_models", lambda request, ctx: None)
    monkeypatch.setattr(engine, "_require_weights", lambda request, geometry: None)
    monkeypatch.setattr(engine, "_normal_map", lambda request, rgba, mask, frame, ctx: (
        np.dstack([np.zeros((*mask.shape, 2)), np.ones(mask.shape)]).astype(np.float32), "nirne", None))

    def picture(size: int) -> LoadedImage:
        return LoadedImage(blob_rgba(size).astype(np.float32) / 255, True, "RGBA")

    params = validate_params(PARAMS, {"multiview_mode": "multidiffusion"})
    request = EngineRequest(picture(96), "obj", 0, params, views=(picture(64), picture(150)))
    with pytest.raises(Seen):
        engine.generate(request, JobContext())
    conditions, geometry_params = seen[0]
    assert len(conditions) == 3 and all(c.shape == (518, 518, 3) for c in conditions)
    assert geometry_params.multiview_mode == "multidiffusion"
    empty = LoadedImage(np.zeros((64, 64, 4), np.float32), True, "RGBA")
    with pytest.raises(BadInput, match="View 3: No foreground"):
        engine.generate(EngineRequest(picture(96), "obj", 0, params, views=(picture(64), empty)), JobContext())
    with pytest.raises(BadInput, match="one finite number per view"):
        engine.generate(EngineRequest(picture(96), "obj", 0, params, views=(picture(64),),
                                      view_angles=(0.0,)), JobContext())
