"""The sparse-structure flow trainer on a toy data set: it learns, resumes exactly, and its output runs."""

from __future__ import annotations

from safetensors.torch import load_file

from training.logs import read_log

from .conftest import run, tiny_config


def test_loss_falls_on_a_tiny_data_set(toy_data, tmp_path):
    """Overfitting 4 assets: the mean loss of the last 10 steps is well under the first 10's (x1.8 measured).
    (The 10x drop takes longer: ``bench/bench_ss_flow_training.py overfit``.)"""
    result = run(tiny_config(steps=40, lr=3e-3, p_uncond=0.0), toy_data, tmp_path)
    first, last = sum(result.losses[:10]) / 10, sum(result.losses[-10:]) / 10
    assert last < first / 1.6, (first, last)
    assert len(read_log(tmp_path)) == 40 and result.export is not None


def test_a_resumed_run_equals_an_uninterrupted_one(toy_data, tmp_path):
    config = tiny_config(steps=6, save_every=3, normal_weight=0.5, normal_points=64, grad_accum=2, batch_size=4)
    whole = run(config, toy_data, tmp_path / "whole")
    first = run(config, toy_data, tmp_path / "split", stop_at=3)
    assert first.steps == 3 and first.export is None
    second = run(config, toy_data, tmp_path / "split", resume=True)
    assert second.steps == 6 and first.losses + second.losses == whole.losses
    assert read_log(tmp_path / "split") == [{**r, } for r in read_log(tmp_path / "whole")]
    a = load_file(str(whole.export) + ".safetensors")
    b = load_file(str(second.export) + ".safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
