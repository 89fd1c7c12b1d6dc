"""Opt-in dynamic int8 quantisation of a flow model's ``nn.Linear`` layers (CPU only).

``torch.ao.quantization.quantize_dynamic`` swaps every ``nn.Linear`` of the transformer blocks for a
``DynamicQuantizedLinear``: int8 weights (per tensor), activations quantised per call from their observed
range, int32 accumulation, float32 out. That covers the attention projections (``to_qkv``, ``to_q``,
``to_kv``, ``to_out``), the MLPs and the adaLN modulation of every block; attention itself (softmax(QK^T)V),
the norms, the timestep MLP, the input / output layers and the latent flow's sparse convolutions stay
float32. The copy it returns
shares nothing with the float32 model (which stays usable). torch 2.13 still ships the API but marks it
deprecated in favour of torchao; the deprecation warnings are silenced here, the behaviour is checked by the
tests. Only CPU float32 models are accepted: the quantised kernels (fbgemm / qnnpack) run on CPUs only.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from .speed_options import resolve_quantize


def quantized_linear_count(model: nn.Module) -> tuple[int, int]:
    """(quantised Linear layers, plain nn.Linear layers left) in ``model``."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    modules = list(model.modules())
    quantized = sum(isinstance(m, DynamicLinear) for m in modules)
    plain = sum(type(m) is nn.Linear for m in modules)
    return quantized, plain


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of the float32 CPU flow ``model`` whose transformer ``blocks`` have int8 dynamic Linear layers.

    Block by block (the transient peak is one float32 block, not a second model); the layers outside the
    blocks (timestep MLP, input / output layers, the latent flow's sparse conv blocks) are shared with
    ``model`` unchanged: they are a few percent of the FLOPs, and some read their weight's dtype.
    """
    param = next(model.parameters())
    resolve_quantize("int8", param.device, param.dtype)  # BadInput off a float32 CPU model
    engines = torch.backends.quantized.supported_engines
    if torch.backends.quantized.engine not in engines or torch.backends.quantized.engine == "none":
        torch.backends.quantized.engine = "fbgemm" if "fbgemm" in engines else "qnnpack"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        from torch.ao.quantization import quantize_dynamic

        blocks = nn.ModuleList(quantize_dynamic(block, {nn.Linear}, dtype=torch.qint8, inplace=False)
                               for block in model.blocks)  # type: ignore[union-attr]
    quantized = copy.copy(model)
    quantized._modules = dict(model._modules)  # a shallow copy shares the dict: give the copy its own
    quantized.blocks = blocks
    return quantized
