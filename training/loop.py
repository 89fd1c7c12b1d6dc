"""The optimisation loop every trainer shares: micro-batches over processes and accumulation, DDP, clipping,
EMA, checkpoints with exact resume, logs, and the export when the run is done.

A trainer subclasses ``LoopTrainer``: its ``__init__`` calls ``_begin`` first (settings, micro-batch size),
builds its networks and data, then ``_finish`` with the module that trains; it supplies ``_micro_loss`` (the
loss of micro-batch ``k`` of the current step), ``_config_dict`` (for checkpoints) and ``_export``.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import checkpoint as ckpt
from .distributed import World, barrier, mean_over_world
from .ema import EMA
from .logs import RunLog

ProgressFn = Callable[[str], None]


@dataclass
class TrainResult:
    steps: int
    "Optimizer steps done in total (including those before a resume)."
    losses: list[float] = field(default_factory=list)
    "The loss of each step this call ran (the global batch's mean)."
    export: Path | None = None
    "What the export wrote when the run finished (a checkpoint base or a release folder)."


class LoopTrainer:
    """One run on one process of ``world``; see the module docstring for what a subclass adds."""

    train: Any  # the config's [train] section: steps, batch_size, grad_accum, lr, ..., keep_checkpoints

    def _begin(self, config: Any, out: Path, world: World, progress: ProgressFn | None) -> None:
        self.config, self.train, self.out, self.world = config, config.train, Path(out), world
        self.progress = progress or (lambda line: print(line, file=sys.stderr, flush=True))
        self.micro = self._micro_batch()

    def _finish(self, module: nn.Module, params: Iterable[nn.Parameter], lr_lambda: Callable[[int], float]) -> None:
        """The optimizer over ``params`` of ``module``, its schedule, the EMA of ``module``, the log."""
        self.module = module
        self.params = list(params)
        self.optimizer = torch.optim.AdamW(self.params, lr=self.train.lr, betas=self.train.betas,
                                           weight_decay=self.train.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda)
        self.ema = EMA(module, self.train.ema_rate)
        self.autocast = self._autocast()
        self.step = 0
        self.log = RunLog(self.out, enabled=self.world.is_main)
        self.ddp: nn.Module = module

    def _micro_batch(self) -> int:
        per_step = self.world.size * self.train.grad_accum
        if self.train.batch_size % per_step:
            raise ValueError(f"batch_size {self.train.batch_size} is not a multiple of processes x grad_accum "
                             f"({self.world.size} x {self.train.grad_accum})")
        return self.train.batch_size // per_step

    def _autocast(self) -> bool:
        cuda = self.world.device.type == "cuda"
        if self.train.precision == "bf16" and not cuda:
            raise ValueError("precision 'bf16' is bf16 autocast on CUDA; on a CPU use 'auto' or 'fp32'")
        return cuda and self.train.precision in ("auto", "bf16")

    def resume(self) -> bool:
        """Continue from the newest checkpoint under ``<out>/checkpoints``; False when there is none."""
        found = ckpt.list_checkpoints(self.out)
        if not found:
            return False
        state, ema = ckpt.load_checkpoint(found[-1][1], self.module, self.optimizer, self.scheduler,
                                          self.world.device)
        self.ema.load_state_dict(ema)
        self.step = int(state["step"])
        self.log.truncate_after(self.step)
        return True

    def run(self, stop_at: int | None = None) -> TrainResult:
        """Train until ``steps`` (or until ``stop_at`` steps, checkpointed: a planned interruption)."""
        end = min(self.train.steps, stop_at if stop_at is not None else self.train.steps)
        result = TrainResult(self.step)
        clock = time.perf_counter()
        while self.step < end:
            self._before_step()
            loss, terms = self._optimizer_step()
            self.step += 1
            result.losses.append(loss)
            if self.step % self.train.log_every == 0 or self.step == end:
                self._log(loss, terms, clock)
            if self.step % self.train.save_every == 0 or self.step == end:
                self._save()
        result.steps = self.step
        if self.step == self.train.steps:
            result.export = self._export()
        self.log.close()
        return result

    def _before_step(self) -> None:
        """Wrap the module in DDP once (a trainer that changes what trains re-wraps here)."""
        if self.ddp is self.module:
            self._wrap_ddp()

    def _wrap_ddp(self) -> None:
        if self.world.size > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.world.device.index] if self.world.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.module, device_ids=ids)

    def _slots(self, k: int) -> list[int]:
        """The global batch's sample slots of micro-batch ``k`` on this process."""
        first = (self.world.rank * self.train.grad_accum + k) * self.micro
        return list(range(first, first + self.micro))

    def _micro_loss(self, k: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def _optimizer_step(self) -> tuple[float, dict[str, float]]:
        accum = self.train.grad_accum
        total = torch.zeros((), device=self.world.device)
        sums: dict[str, torch.Tensor] = {}
        for k in range(accum):
            sync = contextlib.nullcontext() if k == accum - 1 or self.ddp is self.module else self.ddp.no_sync()
            with sync:
                loss, terms = self._micro_loss(k)
                (loss / accum).backward()
            total += loss.detach() / accum
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value / accum
        grad_norm = self._clip()
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.module)
        terms_out = {k: float(mean_over_world(v, self.world)) for k, v in sums.items()}
        terms_out["grad_norm"] = grad_norm
        return float(mean_over_world(total, self.world)), terms_out

    def _clip(self) -> float:
        params = [p for p in self.params if p.grad is not None]
        if self.train.grad_clip > 0:
            return float(torch.nn.utils.clip_grad_norm_(params, self.train.grad_clip))
        return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])))

    def _log_fields(self) -> dict[str, Any]:
        """More fields of a log record (and its progress line) after the loss terms."""
        return {}

    def _log(self, loss: float, terms: dict[str, float], clock: float) -> None:
        fields = self._log_fields()
        record = {"step": self.step, "loss": loss, **terms, **fields, "lr": self.scheduler.get_last_lr()[0],
                  "samples": self.step * self.train.batch_size}
        self.log.write(record)
        if self.world.is_main:
            rate = self.step / max(time.perf_counter() - clock, 1e-9)
            extra = " ".join(f"{k} {v:.4g}" for k, v in terms.items())
            where = "".join(f"{k} {v} " for k, v in fields.items())
            self.progress(f"step {self.step}/{self.train.steps} {where}loss {loss:.4g} {extra} "
                          f"({rate:.2f} steps/s)")

    def _config_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def _save(self) -> None:
        if self.world.is_main:
            extra = {"config": self._config_dict(), "world_size": self.world.size}
            ckpt.save_checkpoint(self.out, self.step, self.module, self.ema.state_dict(), self.optimizer,
                                 self.scheduler, extra)
            ckpt.prune_checkpoints(self.out, self.train.keep_checkpoints)
        barrier(self.world)

    def export_state(self) -> dict[str, torch.Tensor]:
        """The weights the export holds: the EMA (default) or the raw module, buffers included."""
        if self.train.export == "ema":
            return self.ema.model_state(self.module)
        return {k: v.detach().float() for k, v in self.module.state_dict().items()}

    def _export(self) -> Path:
        raise NotImplementedError


def run_training(make: Callable[[], LoopTrainer], out: Path, world: World, *, resume: bool,
                 stop_at: int | None) -> TrainResult:
    """Make ``out`` (main process), build the trainer, resume it when asked and there is a checkpoint, run."""
    if world.is_main:
        Path(out).mkdir(parents=True, exist_ok=True)
    barrier(world)
    trainer = make()
    if resume and trainer.resume() and world.is_main:
        trainer.progress(f"resumed at step {trainer.step}")
    return trainer.run(stop_at)
