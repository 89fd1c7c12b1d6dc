"""The structured-latent flow trainer on a toy data set: it learns, resumes exactly, splits batches exactly,
takes the decoded-normal regulariser, and its export loads strictly into the engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from backend.models.loading import load_checkpoint
from training.config import TrainConfig, config_from_dict
from training.logs import read_log
from training.slat_trainer import train_slat_flow
from training.trainer import TrainResult

from .conftest import CPU

SLAT_DECODER = {"overrides": {"num_blocks": 1}}
"The tiny mesh decoder with one swin block (its 256 channels are the least its GroupNorm(32) allows)."


def slat_config(decoder: dict | None = None, model: dict | None = None, **train: Any) -> TrainConfig:
    defaults = {"steps": 4, "batch_size": 2, "lr": 1e-3, "ema_rate": 0.9, "log_every": 1, "save_every": 1000,
                "p_uncond": 0.0}
    return config_from_dict({"model": model or {}, "decoder": decoder or SLAT_DECODER,
                             "train": {**defaults, **train}})


def run_slat(config: TrainConfig, data: Path, out: Path, **kwargs: Any) -> TrainResult:
    return train_slat_flow(config, data, out, CPU, progress=lambda line: None, **kwargs)


def _weights(result: TrainResult) -> dict[str, torch.Tensor]:
    return load_file(str(result.export) + ".safetensors")


def test_loss_falls_on_a_tiny_data_set(slat_data, tmp_path):
    """Overfitting 4 assets for 16 steps: the last 4 steps' mean loss is well under the first 4's (the 10x drop
    takes longer: ``bench/bench_slat_flow_training.py overfit``)."""
    result = run_slat(slat_config(steps=16, lr=3e-3), slat_data, tmp_path)
    first, last = sum(result.losses[:4]) / 4, sum(result.losses[-4:]) / 4
    assert last < first / 1.5, (first, last)
    assert len(read_log(tmp_path)) == 16 and result.export is not None
    assert result.export.name == "slat_flow_trained"


def test_a_resumed_run_equals_an_uninterrupted_one(slat_data, tmp_path):
    config = slat_config(steps=4, save_every=2, grad_accum=2, batch_size=2)
    whole = run_slat(config, slat_data, tmp_path / "whole")
    first = run_slat(config, slat_data, tmp_path / "split", stop_at=2)
    assert first.steps == 2 and first.export is None
    second = run_slat(config, slat_data, tmp_path / "split", resume=True)
    assert second.steps == 4 and first.losses + second.losses == whole.losses
    assert read_log(tmp_path / "split") == read_log(tmp_path / "whole")
    a, b = _weights(whole), _weights(second)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_regulariser_runs_and_accumulation_equals_the_whole_batch(slat_data, tmp_path):
    """One step with the decoded-normal loss: finite, logged, and 2 micro-batches of 1 give the weights one
    batch of 2 gives (the loss is a mean of per-sample means, so the split does not matter)."""
    train = {"steps": 1, "normal_weight": 1.0, "normal_points": 64, "export": "model"}
    whole = run_slat(slat_config(**train), slat_data, tmp_path / "whole")
    split = run_slat(slat_config(**train, grad_accum=2), slat_data, tmp_path / "split")
    record = read_log(tmp_path / "whole")[0]
    assert 0.0 < record["normal"] <= 2.0 and torch.isfinite(torch.tensor(whole.losses)).all()
    assert torch.allclose(torch.tensor(split.losses), torch.tensor(whole.losses), rtol=1e-5)
    a, b = _weights(whole), _weights(split)
    diff = torch.cat([(a[k] - b[k]).abs().flatten() for k in a])
    # Adam's first step moves each weight by about lr * g / (|g| + eps): where g is near eps, the two sums'
    # rounding (which differs between CPUs' kernels) shows. On one AVX2 CPU: 45 of 174k weights over 1e-6,
    # the largest 1.4e-4 (lr 1e-3); a real mismatch moves most weights.
    assert diff.max() < 5e-4 and (diff > 1e-6).float().mean() < 1e-3


def test_the_export_loads_strictly_as_the_release_class(slat_data, tmp_path):
    result = run_slat(slat_config(steps=1, batch_size=1, ema_rate=0.5), slat_data, tmp_path)
    flow = load_checkpoint(result.export)  # strict keys, shapes and dtypes
    assert type(flow).__name__ == "SLatFlowModel"
    saved = _weights(result)
    assert all(torch.equal(saved[k], v) for k, v in flow.state_dict().items())


def test_bad_assets_are_refused_with_the_file_and_the_array_named(slat_data, tmp_path):
    import numpy as np
    import pytest

    from training.data import DataError
    from training.slat_data import load_slat_asset

    good = dict(np.load(next(iter(sorted(slat_data.iterdir())))))
    twice = np.concatenate([good["slat_coords"][:1], good["slat_coords"][:1]])
    cases = [({"slat_coords": twice, "slat_feats": good["slat_feats"][:2]}, "a voxel twice"),
             ({"slat_coords": good["slat_coords"] + 64}, "leave the 64"),
             ({"slat_feats": good["slat_feats"][:, :4]}, "expected .*, 8"),
             ({"slat_feats": np.full_like(good["slat_feats"], np.nan)}, "NaN"),
             ({"surface_normals": 2 * good["surface_normals"]}, "not unit")]
    for i, (change, message) in enumerate(cases):
        path = tmp_path / f"asset{i}.npz"
        np.savez(path, **{**good, **change})
        with pytest.raises(DataError, match=message) as info:
            load_slat_asset(path, need_surface=True)
        assert str(path) in str(info.value)


def test_the_cosine_schedule_warms_up_then_decays_to_a_hundredth():
    from training.config import TrainSection
    from training.lr_schedule import lr_factor

    train = TrainSection(steps=11, warmup_steps=2, lr_schedule="cosine")
    factors = [lr_factor(s, train) for s in range(11)]
    assert factors[:3] == [0.5, 1.0, 1.0] and abs(factors[-1] - 0.01) < 1e-12
    assert all(a >= b for a, b in zip(factors[1:], factors[2:]))
    assert lr_factor(5, TrainSection(steps=11)) == 1.0
