"""The hi3dgen engine's speed choices, without torch: flow solvers and quantisation modes, and which mode a
request's placement gets (``int8`` off a float32 CPU placement is refused with a hint)."""

from __future__ import annotations

from typing import Any

from .errors import BadInput

SAMPLERS = ("euler", "heun")
"The flow solvers a request may choose; euler is the release's (``sampling``), heun ``sampling_heun``."
QUANTIZE_OPTIONS = ("none", "int8", "int8_on_cpu")
"""``none``: the flows as loaded; ``int8``: dynamic int8 Linear layers (float32 CPU only, refused elsewhere);
``int8_on_cpu``: int8 on a float32 CPU placement, none on any other."""


def resolve_quantize(choice: str, device: Any, dtype: Any) -> str:
    """``choice`` for a placement on ``device`` (a torch.device) in ``dtype``: "none" or "int8"."""
    if choice not in QUANTIZE_OPTIONS:
        raise BadInput(f"Quantisation {choice!r} is not one of {', '.join(QUANTIZE_OPTIONS)}.",
                       hint="Use none, int8 or int8_on_cpu.")
    on_cpu_fp32 = device.type == "cpu" and str(dtype) == "torch.float32"
    if choice == "int8_on_cpu":
        return "int8" if on_cpu_fp32 else "none"
    if choice == "int8" and device.type != "cpu":
        raise BadInput(f"int8 quantisation runs on the CPU only, and this request runs on {device.type}.",
                       hint="Use quantize none (or int8_on_cpu) on a GPU, or run on the CPU.")
    if choice == "int8" and not on_cpu_fp32:
        raise BadInput(f"int8 quantisation needs float32 models, and these are {str(dtype).removeprefix('torch.')}.",
                       hint="Use the float32 precision on the CPU, or quantize none.")
    return choice
