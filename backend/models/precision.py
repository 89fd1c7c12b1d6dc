"""Mixed precision as the release: only the torso's Linear/Conv weights take the compute dtype.

Norm layers (LayerNorm32, GroupNorm32, the RMS gammas), the input/output layers, the timestep embedder
and position embeddings stay float32; the models cast activations at the torso's boundaries.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from backend.nn.norms import MultiHeadRMSNorm


def _keeps_float32(module: nn.Module) -> bool:
    if isinstance(module, (nn.LayerNorm, nn.GroupNorm, MultiHeadRMSNorm)):
        return True
    return type(module).__name__.endswith(("Norm32", "Norm"))  # sparse norms of backend.nn.sparse_norm


def cast_torso(modules: Iterable[nn.Module], dtype: torch.dtype) -> None:
    """Cast, in place, every parameter under ``modules`` to ``dtype`` except those of norm layers."""
    for root in modules:
        for module in root.modules():
            if _keeps_float32(module):
                continue
            for name, param in list(module.named_parameters(recurse=False)):
                if param.dtype != dtype:
                    setattr(
                        module, name, nn.Parameter(param.data.to(dtype), requires_grad=param.requires_grad)
                    )
