"""Device and dtype choice, made once at the entry point and passed down explicitly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")


@dataclass(frozen=True)
class Placement:
    """Where the networks run and in which precision (norms still compute in float32)."""

    device: "torch.device"
    dtype: "torch.dtype"

    def describe(self) -> str:
        return f"{self.device.type} ({str(self.dtype).removeprefix('torch.')})"


def available_devices() -> list[str]:
    """Device kinds usable in this process, best first (always ends with ``cpu``)."""
    import torch

    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    found.append("cpu")
    return found


def choose_placement(requested: str | None = "auto", precision: str = "auto") -> Placement:
    """Pick the device (cuda, then mps, then cpu unless ``requested`` names one) and its dtype.

    ``precision`` is ``auto`` (fp16 on CUDA, bf16 on MPS, fp32 on CPU), ``fp32``, ``fp16`` or ``bf16``.
    """
    import torch

    from .errors import BadInput

    requested = (requested or "auto").lower()
    have = available_devices()
    if requested == "auto":
        kind = have[0]
    elif requested.split(":")[0] in have:
        kind = requested
    else:
        raise BadInput(
            f"Device '{requested}' is not available here (available: {', '.join(have)}).",
            hint="Choose 'auto' or one of the available devices in the add-on preferences or with --device.",
        )
    device = torch.device(kind)
    return Placement(device, _dtype_for(device.type, precision))


def _dtype_for(kind: str, precision: str) -> "torch.dtype":
    import torch

    table = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if precision in table:
        return table[precision]
    return {"cuda": torch.float16, "mps": torch.bfloat16}.get(kind, torch.float32)
