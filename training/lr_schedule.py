"""The learning-rate factor of optimizer step ``s`` (what ``LambdaLR`` multiplies ``lr`` by).

Linear warmup over ``warmup_steps`` (factor ``(s + 1) / warmup``), then ``constant`` (1) or ``cosine``: half
a cosine from 1 at the end of the warmup to ``COSINE_FLOOR`` at the last step. A pure function of the step,
so a resumed run's schedule is the uninterrupted one's.
"""

from __future__ import annotations

import math

from .config import TrainSection

COSINE_FLOOR = 0.01


def lr_factor(step: int, train: TrainSection) -> float:
    warmup = train.warmup_steps
    if warmup and step < warmup:
        return (step + 1) / warmup
    if train.lr_schedule == "constant":
        return 1.0
    span = max(train.steps - 1 - warmup, 1)
    progress = min(max(step - warmup, 0) / span, 1.0)
    return COSINE_FLOOR + (1.0 - COSINE_FLOOR) * 0.5 * (1.0 + math.cos(math.pi * progress))
