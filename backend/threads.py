"""torch's CPU thread pools, chosen once at the entry point (``--threads`` / ``HI3DGEN_THREADS``)."""

from __future__ import annotations

import contextlib

from .settings import check_threads


def apply_threads(threads: int) -> None:
    """Use ``threads`` intra-op threads (matmuls, convolutions) and as many inter-op threads; before any
    model runs. ``BadInput`` outside 1..MAX_THREADS."""
    check_threads(threads, allow_default=False)
    import torch

    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # the inter-op pool already started (an embedding process)
        torch.set_num_interop_threads(threads)
