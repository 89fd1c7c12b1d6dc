"""Peak bytes of the tensors alive during a piece of code, on any device (the CPU included): a measuring tool.

``LiveBytes`` is a ``TorchDispatchMode``: every tensor an aten op returns is seen, keyed by its storage (the
C++ ``StorageImpl`` address, so views and in-place results count once), and its bytes are added while any
tensor object on that storage is alive (``weakref.finalize``; PyTorch keeps a tensor's Python object alive
as long as its C++ tensor is, so the count follows the real lifetime). Storages that existed before (the
weights, the inputs) are excluded with ``exclude``; a ``.to(dtype)`` copy of a weight is new memory and
counts. Not seen: scratch memory a fused kernel allocates inside itself (the CPU flash-attention's
per-thread blocks, oneDNN's reorders), which is small next to the activations, and the allocator's
rounding and fragmentation (CUDA's caching allocator rounds to 512 bytes and keeps freed blocks for reuse).

Why not the alternatives: ``torch.profiler(profile_memory=True)`` reports net allocations per op, not a
running peak, and its CPU memory timeline is partial; the CPU allocator has no public hooks; RSS counts
pages the libc allocator keeps after ``free`` and the weights' pages faulted in, so it cannot separate a
stage's activations.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


def storage_key(tensor: torch.Tensor) -> int:
    """The address of ``tensor``'s storage: equal for every view of it, unique while it lives."""
    return int(tensor.untyped_storage()._cdata)


class LiveBytes(TorchDispatchMode):
    """``with LiveBytes() as live: ...`` then ``live.peak`` (bytes): the most new tensor memory alive at once."""

    def __init__(self, explain: bool = False) -> None:
        """``explain``: remember which ops made the tensors alive at the peak (``at_peak``, slower)."""
        super().__init__()
        self.explain = explain
        self.at_peak: list[tuple[int, str]] = []
        self._made_by: dict[int, str] = {}
        self.current = 0
        self.peak = 0
        self._live: dict[int, tuple[int, set[int]]] = {}  # storage key -> (bytes, ids of its live tensors)
        self._excluded: set[int] = set()

    def exclude(self, tensors: Iterable[torch.Tensor]) -> LiveBytes:
        """Do not count these tensors' storages (they were allocated before: weights, inputs)."""
        self._excluded.update(storage_key(t) for t in tensors)
        return self

    def reset_peak(self) -> None:
        """Start a new peak from the memory alive now."""
        self.peak = self.current

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                self._track(leaf, str(func) if self.explain else "")
        return out

    def _track(self, tensor: torch.Tensor, op: str = "") -> None:
        key = storage_key(tensor)
        if key in self._excluded:
            return
        entry = self._live.get(key)
        if entry is None:
            entry = (tensor.untyped_storage().nbytes(), set())
            self._live[key] = entry
            self.current += entry[0]
            if self.explain:
                self._made_by[key] = f"{op} {list(tensor.shape)} {str(tensor.dtype).removeprefix('torch.')}"
            if self.current > self.peak:
                self.peak = self.current
                if self.explain:
                    self.at_peak = sorted(((self._live[k][0], self._made_by.get(k, "")) for k in self._live),
                                          reverse=True)[:12]
        if id(tensor) not in entry[1]:
            entry[1].add(id(tensor))
            weakref.finalize(tensor, self._release, key, id(tensor))

    def _release(self, key: int, tensor_id: int) -> None:
        entry = self._live.get(key)
        if entry is None:
            return
        entry[1].discard(tensor_id)
        if not entry[1]:
            del self._live[key]
            self._made_by.pop(key, None)
            self.current -= entry[0]


def module_tensors(*modules: torch.nn.Module) -> list[torch.Tensor]:
    """Every parameter and buffer of ``modules`` (to ``exclude`` them)."""
    return [t for m in modules for t in (*m.parameters(), *m.buffers())]


def weight_bytes(*modules: torch.nn.Module) -> int:
    """Bytes of the parameters and buffers of ``modules`` at their current dtypes."""
    seen: dict[int, int] = {}
    for t in module_tensors(*modules):
        seen[storage_key(t)] = t.untyped_storage().nbytes()
    return sum(seen.values())
