"""The staged NiRNE trainer: EMA, gradient accumulation, AMP on CUDA, DDP, exact resume, release export.

Stages (the paper's domain-specific schedule), by optimizer step ``s``:

1. ``s < steps_real``: both streams train on ``<data>/real`` (the clean stream learns the low frequencies
   from real-domain images);
2. afterwards: the clean stream (control branch) is frozen and the noisy stream (UNet) alone trains on
   ``<data>/synthetic`` (its sharp, detailed ground truth teaches the high frequencies). The paper does not
   give stage-2 hyper-parameters; ``lr_synthetic`` (default: ``lr``) sets its learning rate.

The VAE is frozen throughout; the image and normal latents of every sample are encoded once (posterior mode
times ``scaling_factor``, as the pipeline) and cached. Sample slot ``j`` of step ``s`` reads the split's element
``Schedule.asset_index((s - stage_start) * batch_size + j)`` and draws its timestep and noise from a generator
seeded by ``(seed, s, j)``: a resumed run repeats an uninterrupted one, 2 processes repeat 1 with the same global
batch. The stage depends on the step alone, so resuming inside either stage freezes the same parameters.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .. import checkpoint as ckpt
from ..data import Schedule, sample_seed
from ..distributed import World, barrier, mean_over_world
from ..ema import EMA
from ..logs import RunLog
from .config import NirneConfig, nirne_config_to_dict
from .data import SampleFolder
from .export import split_states, write_release_folder
from .networks import Networks, fresh_networks, load_networks
from .objective import alphas_cumprod, draw_noise, inject_noise, regression_loss

ProgressFn = Callable[[str], None]
STAGES = ("real", "synthetic")


@dataclass
class Split:
    """One domain's samples on the run's device, with their cached latents."""

    clean: torch.Tensor  # [N, 4, h, w] image latents
    target: torch.Tensor  # [N, 4, h, w] normal latents
    normals: torch.Tensor  # [N, 3, H, W]
    masks: torch.Tensor  # [N, H, W] bool
    schedule: Schedule


@dataclass
class NirneResult:
    steps: int
    losses: list[float] = field(default_factory=list)
    "The loss of each step this call ran (the global batch's mean)."
    export: Path | None = None
    "The yoso-normal release folder written when the run finished."


def build_networks(config: NirneConfig) -> Networks:
    if config.model.init:
        return load_networks(Path(config.model.init))
    return fresh_networks(config.model.preset, config.model.seed)


def _alignment(nets: Networks) -> int:
    vae_levels = len(nets.vae.config.block_out_channels) - 1
    unet_levels = len(nets.streams.unet.config.block_out_channels) - 1
    return 2 ** (vae_levels + unet_levels)


@torch.no_grad()
def encode(vae: nn.Module, pixels: torch.Tensor, scaling: float, chunk: int = 16) -> torch.Tensor:
    """Latents [N, 4, h, w] of images [N, 3, H, W] in [-1, 1]: posterior mode x scaling, as the pipeline."""
    parts = [vae.encode(pixels[i:i + chunk]).latent_dist.mode() * scaling for i in range(0, len(pixels), chunk)]
    return torch.cat(parts).float()


class NirneTrainer:
    """Holds the networks, optimizer and data of one run on one process of ``world``."""

    def __init__(self, config: NirneConfig, data: Path, out: Path, world: World,
                 progress: ProgressFn | None = None) -> None:
        self.config, self.train, self.out, self.world = config, config.train, Path(out), world
        self.progress = progress or (lambda line: print(line, file=sys.stderr, flush=True))
        self.micro = self._micro_batch()
        self.nets = build_networks(config)
        self.streams = self.nets.streams.to(world.device)
        self.vae = self.nets.vae.to(world.device)
        self.splits = self._load_splits(Path(data))
        self.abar = alphas_cumprod(world.device)
        self.trainable = [(n, p) for n, p in self.streams.named_parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW([p for _, p in self.trainable], lr=self.train.lr,
                                           betas=self.train.betas, weight_decay=self.train.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.ema = EMA(self.streams, self.train.ema_rate)
        self.autocast = self._autocast()
        self.step = 0
        self.log = RunLog(self.out, enabled=world.is_main)
        self.ddp: nn.Module = self.streams
        self._stage: str | None = None

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

    def _lr_factor(self, step: int) -> float:
        warmup = self.train.warmup_steps
        factor = min(1.0, (step + 1) / warmup) if warmup else 1.0
        if step >= self.train.steps_real and self.train.lr_synthetic > 0 and self.train.lr > 0:
            factor *= self.train.lr_synthetic / self.train.lr
        return factor

    def _load_splits(self, data: Path) -> dict[str, Split]:
        align = _alignment(self.nets)
        needed = [s for s, n in zip(STAGES, (self.train.steps_real, self.train.steps_synthetic)) if n > 0]
        splits = {}
        for name in needed:
            pixels, normals, masks = SampleFolder(data / name, align).stacked()
            device = self.world.device
            clean = encode(self.vae, pixels.to(device), self.nets.scaling_factor)
            target = encode(self.vae, normals.to(device), self.nets.scaling_factor)
            splits[name] = Split(clean, target, normals.to(device), masks.to(device),
                                 Schedule(len(pixels), self.train.seed + STAGES.index(name)))
        return splits

    def stage_of(self, step: int) -> str:
        return "real" if step < self.train.steps_real else "synthetic"

    def _enter_stage(self, stage: str) -> None:
        """Freeze or unfreeze the clean stream, and (re)wrap DDP over what trains now."""
        if stage == self._stage:
            return
        for name, param in self.trainable:
            if name.startswith("controlnet."):
                param.requires_grad_(stage == "real")
        self._stage = stage
        if self.world.size > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.world.device.index] if self.world.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.streams, device_ids=ids)
        if self.world.is_main:
            self.progress(f"stage {stage} from step {self.step}")

    def resume(self) -> bool:
        """Continue from the newest checkpoint under ``<out>/checkpoints``; False when there is none."""
        found = ckpt.list_checkpoints(self.out)
        if not found:
            return False
        state, ema = ckpt.load_checkpoint(found[-1][1], self.streams, self.optimizer, self.scheduler,
                                          self.world.device)
        self.ema.load_state_dict(ema)
        self.step = int(state["step"])
        self.log.truncate_after(self.step)
        return True

    def run(self, stop_at: int | None = None) -> NirneResult:
        """Train until ``steps_real + steps_synthetic`` (or ``stop_at`` steps, checkpointed)."""
        total = self.train.steps
        end = min(total, stop_at if stop_at is not None else total)
        result = NirneResult(self.step)
        clock = time.perf_counter()
        while self.step < end:
            self._enter_stage(self.stage_of(self.step))
            loss, terms = self._optimizer_step()
            self.step += 1
            result.losses.append(loss)
            if self.step % self.train.log_every == 0 or self.step == end:
                self._log(loss, terms, clock)
            if self.step % self.train.save_every == 0 or self.step == end:
                self._save()
        result.steps = self.step
        if self.step == total:
            result.export = self._export()
        self.log.close()
        return result

    def _slots(self, k: int) -> list[int]:
        first = (self.world.rank * self.train.grad_accum + k) * self.micro
        return list(range(first, first + self.micro))

    def _micro_loss(self, stage: str, slots: list[int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        split = self.splits[stage]
        start = 0 if stage == "real" else self.train.steps_real
        batch = self.train.batch_size
        index = torch.tensor([split.schedule.asset_index((self.step - start) * batch + j) for j in slots])
        index = index.to(self.world.device)
        clean = split.clean[index]  # [m, 4, h, w]
        draws = [draw_noise(sample_seed(self.train.seed, self.step, j), tuple(clean.shape[1:]),
                            self.train.noise_t_max) for j in slots]
        t = torch.tensor([d.t for d in draws], device=self.world.device)
        noise = torch.stack([d.noise for d in draws]).to(self.world.device)
        noisy = inject_noise(clean, noise, t, self.abar) if self.train.noise_t_max > 0 else clean
        with torch.autocast(self.world.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            pred = self.ddp(clean, noisy, t)
            return regression_loss(pred, split.target[index], self.vae, self.nets.scaling_factor,
                                   split.normals[index], split.masks[index], self.train.latent_weight,
                                   self.train.pixel_weight)

    def _optimizer_step(self) -> tuple[float, dict[str, float]]:
        accum, stage = self.train.grad_accum, self.stage_of(self.step)
        total = torch.zeros((), device=self.world.device)
        sums: dict[str, torch.Tensor] = {}
        for k in range(accum):
            sync = contextlib.nullcontext() if k == accum - 1 or self.ddp is self.streams else self.ddp.no_sync()
            with sync:
                loss, terms = self._micro_loss(stage, self._slots(k))
                (loss / accum).backward()
            total += loss.detach() / accum
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value / accum
        grad_norm = self._clip()
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.streams)
        out = {k: float(mean_over_world(v, self.world)) for k, v in sums.items()}
        out["grad_norm"] = grad_norm
        return float(mean_over_world(total, self.world)), out

    def _clip(self) -> float:
        params = [p for _, p in self.trainable if p.grad is not None]
        if self.train.grad_clip > 0:
            return float(torch.nn.utils.clip_grad_norm_(params, self.train.grad_clip))
        return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])))

    def _log(self, loss: float, terms: dict[str, float], clock: float) -> None:
        stage = STAGES.index(self.stage_of(self.step - 1)) + 1
        record = {"step": self.step, "loss": loss, **terms, "stage": stage,
                  "lr": self.scheduler.get_last_lr()[0], "samples": self.step * self.train.batch_size}
        self.log.write(record)
        if self.world.is_main:
            rate = self.step / max(time.perf_counter() - clock, 1e-9)
            extra = " ".join(f"{k} {v:.4g}" for k, v in terms.items())
            self.progress(f"step {self.step}/{self.train.steps} stage {stage} loss {loss:.4g} {extra} "
                          f"({rate:.2f} steps/s)")

    def _save(self) -> None:
        if self.world.is_main:
            extra = {"config": nirne_config_to_dict(self.config), "world_size": self.world.size}
            ckpt.save_checkpoint(self.out, self.step, self.streams, self.ema.state_dict(), self.optimizer,
                                 self.scheduler, extra)
            ckpt.prune_checkpoints(self.out, self.train.keep_checkpoints)
        barrier(self.world)

    def export_state(self) -> dict[str, torch.Tensor]:
        """The streams' weights the export holds: the EMA (default) or the raw model, buffers included."""
        if self.train.export == "ema":
            return self.ema.model_state(self.streams)
        return {k: v.detach().float() for k, v in self.streams.state_dict().items()}

    def _export(self) -> Path:
        folder = self.out / "export" / "yoso-normal"
        if self.world.is_main:
            states = split_states(self.export_state(), self.vae.state_dict())
            write_release_folder(folder, self.nets.configs, self.nets.model_index, states,
                                 self.train.export_dtype)
            self.progress(f"wrote {folder} (yoso-normal release layout)")
        barrier(self.world)
        return folder


def train_nirne(config: NirneConfig, data: Path, out: Path, world: World, *, resume: bool = False,
                stop_at: int | None = None, progress: ProgressFn | None = None) -> NirneResult:
    """Train NiRNE on ``data/real`` then ``data/synthetic``; checkpoints, logs and export go to ``out``."""
    out = Path(out)
    if world.is_main:
        out.mkdir(parents=True, exist_ok=True)
    barrier(world)
    trainer = NirneTrainer(config, data, out, world, progress)
    if resume and trainer.resume() and world.is_main:
        trainer.progress(f"resumed at step {trainer.step}")
    return trainer.run(stop_at)
