"""Shared pieces of the training tests: tiny configs, a toy data set, a one-process world on the CPU."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from training.config import TrainConfig, config_from_dict
from training.distributed import World
from training.synthetic import make_dataset
from training.trainer import TrainResult, build_decoder, train_ss_flow

FLOW = {"variant": "tiny_ss_flow", "overrides": {"patch_size": 2, "model_channels": 64}}
"""The tiny flow with 2^3 patches (512 tokens instead of 4096, so a CPU step takes a fraction of a second) and
64 channels (a token carries 8 x 2^3 = 64 values; a narrower model cannot pass the noise through). 64 is also
what caps the loss near t = 1 (no channel to spare for the noise): the overfit bench's 10x uses 128."""
DECODER = {"variant": "tiny_ss_dec", "overrides": {"channels": [8], "num_res_blocks": 0, "num_res_blocks_middle": 0}}
"A one-level structure decoder (16^3 logits): the regulariser's code path at a CPU test's cost."
CPU = World(rank=0, size=1, local_rank=0, device=torch.device("cpu"))


def tiny_config(**train: Any) -> TrainConfig:
    defaults = {"steps": 4, "batch_size": 2, "lr": 1e-3, "ema_rate": 0.9, "log_every": 1, "save_every": 1000}
    return config_from_dict({"model": FLOW, "decoder": DECODER, "train": {**defaults, **train}})


def run(config: TrainConfig, data: Path, out: Path, **kwargs: Any) -> TrainResult:
    return train_ss_flow(config, data, out, CPU, progress=lambda line: None, **kwargs)


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four toy assets (2 spheres, 2 boxes) whose latents decode to their shapes through ``DECODER``."""
    folder = tmp_path_factory.mktemp("toy")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    make_dataset(folder, build_decoder(tiny_config(), torch.device("cpu")), 4, points=2048, fit_steps=30)
    return folder


@pytest.fixture(scope="session")
def slat_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four toy structured-latent assets (2 small spheres, 2 small boxes; 86-232 voxels each)."""
    from training.slat_synthetic import make_slat_dataset

    folder = tmp_path_factory.mktemp("slat_toy")
    make_slat_dataset(folder, 4, points=512)
    return folder


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread for the test (gradchecks: thousands of small float64 ops, where a second thread only
    spins on a shared 2-core machine); the thread count restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
