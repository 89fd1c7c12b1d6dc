"""What the training benches share: thread setup, progress printing, loss summaries and spreads over seeds.

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
