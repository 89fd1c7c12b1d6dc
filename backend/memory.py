"""Which networks sit on the compute device when: one stage's networks at a time, or all of them.

``offload`` (the default): the networks live in CPU memory (pinned when the device is CUDA, so the copy
runs at full bus speed) and each stage moves its own networks onto the device for the stage only, then
back; the device holds one stage's weights plus that stage's activations. ``resident``: the networks
stay on the device once moved there (the fastest, for cards with room for all of them). On a CPU device
the two are the same (home and device coincide; nothing moves).

Moving keeps every parameter's dtype (the release's mixed precision: norms in float32) and moves the
buffers too; tensors are replaced in place, so the module objects the pipeline holds stay valid.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

MEMORY_MODES = ("offload", "resident")
"The ``memory`` setting's values; the first is the default."


def check_mode(mode: object) -> str:
    """``mode`` when it is one of ``MEMORY_MODES``, else a hinted ``BadInput``."""
    from .errors import BadInput

    if mode not in MEMORY_MODES:
        raise BadInput(f"Unknown memory mode {str(mode)[:40]!r}.",
                       hint=f"Use one of: {', '.join(MEMORY_MODES)}.")
    return str(mode)


@dataclass
class StageMemory:
    """Moves a stage's networks to ``device`` while the stage runs; ``log`` records (stage, networks moved)."""

    device: "torch.device"
    mode: str = "offload"
    log: list[tuple[str, int]] = field(default_factory=list)
    guard: Callable[[str, int], None] | None = field(default=None, compare=False)
    "Called as ``guard(stage, voxels)`` before a stage that knows its voxel count (the memory plan's re-check)."

    def __post_init__(self) -> None:
        import torch

        self.device = torch.device(self.device)
        if self.device.type == "cuda" and self.device.index is None:  # compare equal to the tensors' cuda:N
            self.device = torch.device("cuda", torch.cuda.current_device())
        check_mode(self.mode)

    @property
    def home(self) -> "torch.device":
        """Where the networks wait between stages: the CPU when offloading, else the device itself."""
        import torch

        return torch.device("cpu") if self.mode == "offload" else self.device

    def switch(self, mode: str, *modules: "nn.Module") -> None:
        """Take another mode for the next stages; ``modules`` (every network this manages) go to its home."""
        self.mode = check_mode(mode)
        for module in modules:
            move_module(module, self.home, pin=self.home != self.device and self.device.type == "cuda")

    @contextmanager
    def stage(self, name: str, *modules: "nn.Module", voxels: int = 0) -> Iterator[None]:
        """Run the body with ``modules`` on the device; afterwards they go home (offload) or stay (resident).
        ``voxels``: the stage's voxel count, for ``guard`` (checked before anything moves)."""
        if self.guard is not None and voxels:
            self.guard(name, voxels)
        for module in modules:
            move_module(module, self.device)
        self.log.append((name, len(modules)))
        try:
            yield
        finally:
            if self.home != self.device:
                for module in modules:
                    move_module(module, self.home, pin=self.device.type == "cuda")
                _release_cache(self.device)


def move_module(module: "nn.Module", device: "torch.device", pin: bool = False) -> None:
    """Move every parameter and buffer of ``module`` to ``device`` in place (dtypes kept); ``pin``: page-lock
    the CPU copies so the next move to a CUDA device is a fast asynchronous copy."""
    import torch

    with torch.inference_mode(False), torch.no_grad():
        for sub in module.modules():
            for store in (sub._parameters, sub._buffers):
                for key, tensor in store.items():
                    if tensor is None or (tensor.device == device and not pin):
                        continue
                    moved = tensor.to(device, non_blocking=True)
                    if pin and moved.device.type == "cpu" and not moved.is_pinned():
                        moved = moved.pin_memory()
                    if isinstance(tensor, torch.nn.Parameter):
                        store[key] = torch.nn.Parameter(moved, requires_grad=tensor.requires_grad)
                    else:
                        store[key] = moved


def _release_cache(device: "torch.device") -> None:
    """Hand the cached blocks of a finished stage back to the driver (other processes see the memory free)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
