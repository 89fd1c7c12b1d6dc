"""torch's CPU thread pools, chosen once at the entry point (``--threads`` / ``HI3DGEN_THREADS``)."""

from __future__ import annotations

import contextlib

from .errors import BadInput
from .settings import MAX_THREADS


def apply_threads(threads: int) -> None:
    """Use ``threads`` intra-op threads (matmuls, convolutions) and as many inter-op threads; before any
    model runs. ``BadInput`` outside 1..MAX_THREADS."""
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS:
        raise BadInput(f"The thread count cannot be {threads!r}.", hint=f"Use a whole number from 1 to {MAX_THREADS}.")
    import torch

    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # the inter-op pool already started (an embedding process)
        torch.set_num_interop_threads(threads)
