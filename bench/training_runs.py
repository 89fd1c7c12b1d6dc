"""What the training benches share: thread setup, progress printing, loss summaries, spreads over seeds and a
tiny release with its mesh decoder fitted to toy data (``fitted_release``).

Imported by ``bench_ss_flow_training.py``, ``bench_slat_flow_training.py`` and ``bench_normal_regulariser.py``
(run from the repository root; the script's folder is on ``sys.path``, so ``import training_runs`` works).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def setup_threads() -> None:
    """At most 2 torch threads (the benches run on a shared 2-core machine)."""
    torch.set_num_threads(min(2, torch.get_num_threads()))


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def spread(values: Sequence[float]) -> str:
    """``mean ± sample standard deviation (n)`` of ``values``."""
    m = mean(values)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return f"{m:.2f} ± {sd:.2f} (n={len(values)})"


def every(n: int) -> Callable[[str], None]:
    """A progress callback printing every ``n``-th line (the trainers log every step in the benches)."""
    count = [0]

    def show(line: str) -> None:
        count[0] += 1
        if count[0] % n == 0:
            print(line, flush=True)

    return show


def quiet(line: str) -> None:
    """A progress callback that prints nothing."""


def report_losses(label: str, losses: list[float], seconds: float, window: int = 10) -> float:
    """Print the first ``window`` steps' mean loss against the last ``window``'s, and a 10-row table.

    Returns the ratio first / last (how many times lower the loss got).
    """
    first, last = mean(losses[:window]), mean(losses[-window:])
    print(f"{label}: loss {first:.4f} -> {last:.4f} (first vs last {window} steps: x{first / last:.1f} lower) "
          f"in {seconds:.0f} s")
    for i in range(0, len(losses), max(1, len(losses) // 10)):
        print(f"  steps {i + 1:4d}-{i + window:4d}: {mean(losses[i:i + window]):.4f}")
    return first / last


def fitted_release(root: Path, data: Path, shapes: list) -> Path:
    """A tiny release (``root / "release"``) whose ``slat_decoder_mesh`` is a one-block tiny decoder with its SDF
    read-out fitted to the toy assets of ``data`` (``slat_synthetic.fit_mesh_decoder``); its other networks are
    ``write_release_folder``'s (random, tiny)."""
    from backend.models.loading import read_pipeline_json
    from backend.models.testing import write_release_folder
    from tests.training.conftest import CPU
    from tests.training.test_slat_flow import slat_config
    from training.export import place_in_release, write_release_checkpoint
    from training.slat_synthetic import fit_mesh_decoder
    from training.slat_trainer import build_mesh_decoder

    release = write_release_folder(root / "release")
    pipeline = read_pipeline_json(release)
    mean_, std = torch.tensor(pipeline.slat_mean), torch.tensor(pipeline.slat_std)
    decoder, _ = build_mesh_decoder(slat_config(), CPU.device)  # random, one swin block
    residual = fit_mesh_decoder(decoder, mean_, std, data, shapes)
    base = write_release_checkpoint(root / "fitted_mesh_decoder", decoder.config, decoder.state_dict())
    place_in_release(release, "slat_decoder_mesh", base)
    print(f"mesh decoder read-out fitted to {len(shapes)} toy assets (relative residual {residual:.3f})")
    return release
