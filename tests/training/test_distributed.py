"""Data parallelism: two processes under ``torchrun`` (gloo, CPU) train the weights one process trains with
the same global batch; gradient accumulation does the same within one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from training.logs import read_log

from .conftest import DECODER, FLOW, run, tiny_config

REPO = Path(__file__).resolve().parents[2]
TRAIN = {"steps": 2, "batch_size": 2, "lr": 1e-3, "ema_rate": 0.9, "log_every": 1, "save_every": 1000,
         "normal_weight": 0.5, "normal_points": 64, "export": "model"}


def _toml(train: dict) -> str:
    def value(v: object) -> str:
        if isinstance(v, str):
            return f'"{v}"'
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    tables = {"model": FLOW, "decoder": DECODER, "train": train}
    return "\n".join(f"[{name}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in table.items())
                     for name, table in tables.items())


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "export" / "ckpts" / "ss_flow_trained.safetensors"))


def _assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Equal up to float32 summation order. AdamW divides each gradient by the root of its second moment, so
    a gradient near zero whose sum differs in its last bits can move a weight by a fraction of one step (lr):
    the bound is a tenth of a step for the worst weight and a thousandth on average."""
    assert a.keys() == b.keys()
    lr = TRAIN["lr"]
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    mean = float(torch.cat([(a[k] - b[k]).abs().flatten() for k in a]).mean())
    assert worst < 0.1 * lr and mean < 1e-3 * lr, (worst, mean)


def test_two_torchrun_processes_equal_one_with_the_whole_batch(toy_data, tmp_path):
    config_path = tmp_path / "config.toml"
    config_path.write_text(_toml(TRAIN), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "training", "ss-flow", "--config", str(config_path), "--data", str(toy_data),
           "--out", str(tmp_path / "ddp"), "--device", "cpu"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    single = run(tiny_config(**TRAIN), toy_data, tmp_path / "single")
    ddp_losses = [r["loss"] for r in read_log(tmp_path / "ddp")]
    assert torch.allclose(torch.tensor(ddp_losses), torch.tensor(single.losses), rtol=1e-5)
    _assert_close(_weights(tmp_path / "ddp"), _weights(tmp_path / "single"))
    state = read_log(tmp_path / "ddp")[-1]
    assert state["samples"] == 2 * 2


def test_gradient_accumulation_equals_the_whole_batch(toy_data, tmp_path):
    whole = run(tiny_config(**TRAIN), toy_data, tmp_path / "whole")
    split = run(tiny_config(**TRAIN, grad_accum=2), toy_data, tmp_path / "split")
    assert torch.allclose(torch.tensor(split.losses), torch.tensor(whole.losses), rtol=1e-5)
    _assert_close(_weights(tmp_path / "split"), _weights(tmp_path / "whole"))
