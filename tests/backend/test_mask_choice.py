"""The engines' ``mask`` parameter: ``auto`` keeps alpha -> learned -> estimate; a forced ``estimate`` or
``learned`` ignores the image's alpha; a forced ``learned`` without its weights is an error, not a silent
fallback. Both engines, in process (the hi3dgen engine with tiny NiRNE weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from backend.engines.base import EngineRequest, validate_params
from backend.engines.hi3dgen import PARAMS as HI3DGEN_PARAMS
from backend.engines.hi3dgen import Hi3DGenEngine
from backend.engines.relief import PARAMS as RELIEF_PARAMS
from backend.engines.relief import ReliefEngine
from backend.errors import WeightsMissing
from backend.images import LoadedImage
from backend.jobs import JobContext
from backend.nirne.matting import MattingProvider
from backend.settings import BackendSettings

from .test_matting import write_tiny_rmbg
from .test_nirne import write_release as write_yoso_folder


def _two_objects() -> LoadedImage:
    """RGB: a blue box on the left of a grey background; alpha: a different box on the right."""
    rgba = np.full((96, 96, 4), 0.8, np.float32)
    rgba[20:76, 10:44, :3] = (0.1, 0.3, 0.8)
    rgba[..., 3] = 0.0
    rgba[30:70, 58:86, 3] = 1.0
    return LoadedImage(rgba, True, "RGBA")


def _request(params: dict, specs: tuple) -> EngineRequest:
    return EngineRequest(image=_two_objects(), name="two", seed=0, params=validate_params(specs, params))


def _mask_column(mask: np.ndarray) -> float:
    return float(np.nonzero(mask)[1].mean())


def _relief(weights: Path, choice: str):
    engine = ReliefEngine(matting=MattingProvider(BackendSettings(weights_dir=str(weights))))
    return engine.normals(_request({"mask": choice}, RELIEF_PARAMS), JobContext())


def test_relief_auto_keeps_alpha_and_a_forced_estimate_ignores_it(tmp_path):
    auto = _relief(tmp_path, "auto")
    assert auto.stats["mask"]["source"] == "alpha" and _mask_column(auto.normal_map.mask) > 58
    forced = _relief(tmp_path, "estimate")
    assert forced.stats["mask"]["source"] == "estimated" and _mask_column(forced.normal_map.mask) < 44


def test_relief_forced_learned_needs_its_weights_and_then_ignores_alpha(tmp_path):
    with pytest.raises(WeightsMissing) as info:
        _relief(tmp_path / "none", "learned")
    assert "python -m backend download rmbg" in info.value.hint
    write_tiny_rmbg(tmp_path / "weights" / "rmbg")
    assert _relief(tmp_path / "weights", "learned").stats["mask"]["source"] == "learned"
    assert _relief(tmp_path / "weights", "auto").stats["mask"]["source"] == "alpha"  # auto: alpha still comes first


@pytest.fixture(scope="module")
def hi3dgen(tmp_path_factory: pytest.TempPathFactory) -> Hi3DGenEngine:
    root = tmp_path_factory.mktemp("weights")
    write_yoso_folder(root / "yoso-normal")
    settings = BackendSettings(weights_dir=str(root))
    return Hi3DGenEngine(settings, MattingProvider(settings))


def _hi3dgen_mask(engine: Hi3DGenEngine, choice: str) -> np.ndarray:
    request = _request({"mask": choice, "normal_resolution": 64}, HI3DGEN_PARAMS)
    return engine.normals(request, JobContext()).normal_map.mask  # [96, 96] at the input's size


def test_hi3dgen_auto_keeps_alpha_and_a_forced_estimate_ignores_it(hi3dgen):
    assert _mask_column(_hi3dgen_mask(hi3dgen, "auto")) > 58
    assert _mask_column(_hi3dgen_mask(hi3dgen, "estimate")) < 44


def test_hi3dgen_forced_learned_without_weights_is_an_error(hi3dgen):
    with pytest.raises(WeightsMissing) as info:
        _hi3dgen_mask(hi3dgen, "learned")
    assert "python -m backend download rmbg" in info.value.hint


def test_a_given_mask_image_wins_over_a_forced_mode(tmp_path):
    from backend.images import apply_mask

    own = _two_objects()
    mask = LoadedImage(np.repeat(own.rgba[..., 3:], 4, axis=-1), False, "L")  # white = the right-hand box
    request = _request({"mask": "estimate"}, RELIEF_PARAMS)
    request.image = apply_mask(own, mask)
    result = ReliefEngine().normals(request, JobContext())
    assert result.stats["mask"]["source"] == "given" and _mask_column(result.normal_map.mask) > 58


def test_hi3dgen_reports_where_its_mask_came_from(hi3dgen):
    for choice, source in (("auto", "alpha"), ("estimate", "estimated")):
        request = _request({"mask": choice, "normal_resolution": 64}, HI3DGEN_PARAMS)
        report = hi3dgen.normals(request, JobContext()).stats["mask"]
        assert report["source"] == source and 0.1 < report["coverage"] < 0.4 and report["warning"] == ""
