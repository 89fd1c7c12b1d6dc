"""Processes of a run: one, or several started by ``torchrun`` (``torch.distributed`` + DDP).

``torchrun --nproc_per_node N -m training ss-flow ...`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the
rendezvous variables; this module reads them once at the entry point. CUDA processes use NCCL, one GPU per
local rank; CPU processes use gloo. A plain ``python -m training`` is a world of one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "")
    if not text:
        return default
    if not text.isdigit():
        raise ValueError(f"environment variable {name}={text!r} is not a non-negative integer")
    return int(text)


def start(device: str = "auto") -> World:
    """Join the process group ``torchrun`` describes (if any) and pick this process's device.

    ``device``: 'auto' (the local GPU if CUDA is available, else the CPU), 'cpu' or 'cuda'.
    """
    size, rank, local = _env_int("WORLD_SIZE", 1), _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device {device!r} must be auto, cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA device")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    chosen = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(chosen)
    if size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=size)
    return World(rank, size, local, chosen)


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()


def mean_over_world(value: torch.Tensor, world: World) -> torch.Tensor:
    """The mean of ``value`` over the processes (itself in a world of one)."""
    if world.size == 1:
        return value
    total = value.detach().clone()
    dist.all_reduce(total)
    return total / world.size


def stop(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()
