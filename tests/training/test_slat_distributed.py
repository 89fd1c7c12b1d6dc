"""Data parallelism for the latent flow: two ``torchrun`` processes (gloo, CPU) train the weights one process
trains with the doubled batch (each process packs its own sparse micro-batch)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from training.logs import read_log

from .test_distributed import _toml
from .test_slat_flow import SLAT_DECODER, run_slat, slat_config

REPO = Path(__file__).resolve().parents[2]
TRAIN = {"steps": 2, "batch_size": 2, "lr": 1e-3, "ema_rate": 0.9, "log_every": 1, "save_every": 1000,
         "p_uncond": 0.0, "export": "model"}


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "export" / "ckpts" / "slat_flow_trained.safetensors"))


def test_two_torchrun_processes_equal_one_with_the_doubled_batch(slat_data, tmp_path):
    config_path = tmp_path / "config.toml"
    text = _toml(TRAIN)  # [model] / [decoder] of the structure tests: replaced by the latent stage's
    text = text.split("[train]")[1]
    config_path.write_text("[decoder]\noverrides = { num_blocks = 1 }\n[train]" + text, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "training", "slat-flow", "--config", str(config_path), "--data", str(slat_data),
           "--out", str(tmp_path / "ddp"), "--device", "cpu"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    single = run_slat(slat_config(decoder=SLAT_DECODER, **TRAIN), slat_data, tmp_path / "single")
    ddp_losses = [r["loss"] for r in read_log(tmp_path / "ddp")]
    assert torch.allclose(torch.tensor(ddp_losses), torch.tensor(single.losses), rtol=1e-5)
    a, b = _weights(tmp_path / "ddp"), _weights(tmp_path / "single")
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    mean = float(torch.cat([(a[k] - b[k]).abs().flatten() for k in a]).mean())
    assert worst < 0.1 * TRAIN["lr"] and mean < 1e-3 * TRAIN["lr"], (worst, mean)  # see test_distributed
    assert read_log(tmp_path / "ddp")[-1]["samples"] == 2 * 2
