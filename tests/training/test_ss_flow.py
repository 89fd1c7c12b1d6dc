"""The sparse-structure flow trainer on a toy data set: it learns, resumes exactly, and its output runs."""

from __future__ import annotations

import torch
from safetensors.torch import load_file

from backend.models.loading import load_checkpoint
from training.evaluate import decoded_normal_error
from training.logs import read_log
from training.trainer import build_decoder

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


def test_the_normal_regulariser_brings_decoded_normals_closer(toy_data, tmp_path):
    """Same steps, same samples: with the regulariser on, the latents the engine's sampler makes from the
    trained flow decode to surfaces whose normals are closer to the true ones."""
    decoder = build_decoder(tiny_config(), torch.device("cpu"))
    errors = {}
    for weight in (0.0, 2.0):
        config = tiny_config(steps=8, lr=3e-3, p_uncond=0.0, normal_weight=weight, normal_points=256,
                             export="model")
        result = run(config, toy_data, tmp_path / f"w{weight:g}")
        errors[weight] = decoded_normal_error(load_checkpoint(result.export), decoder, toy_data, steps=4,
                                              points=512)
    assert errors[2.0] < errors[0.0], errors
