"""The sparse-structure flow trainer: flow matching (+ the normal regulariser), EMA, accumulation, DDP, resume.

One optimizer step takes ``batch_size`` samples over all processes: process ``r`` runs ``grad_accum``
micro-batches of ``batch_size / (world * grad_accum)`` samples. Sample slot ``j`` of step ``s`` reads the asset
``Schedule.asset_index(s * batch_size + j)`` and draws its noise, time, condition dropout and surface points from
a generator seeded by ``(seed, s, j)``. Nothing random depends on which process runs a slot or on what ran
before, so a resumed run repeats an uninterrupted one and 2 processes repeat 1 with the same global batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from backend.models.configs import VARIANTS, SSDecoderConfig, SSFlowConfig, check_supported, check_values
from backend.models.loading import build_network, load_network

from . import checkpoint as ckpt
from .config import TrainConfig, TrainSection, config_to_dict
from .data import Asset, AssetFolder, Schedule, sample_seed
from .distributed import World, barrier, mean_over_world
from .ema import EMA
from .export import write_release_checkpoint
from .flow_matching import diffuse, draw_sample, predicted_x0, target_velocity
from .logs import RunLog
from .lr_schedule import lr_factor
from .normal_loss import normal_loss

ProgressFn = Callable[[str], None]


@dataclass
class Batch:
    x0: torch.Tensor  # [m, 8, 16, 16, 16]
    cond: torch.Tensor  # [m, L, C], zeros where dropped
    noise: torch.Tensor  # like x0
    t: torch.Tensor  # [m] in (0, 1)
    points: torch.Tensor | None = None  # [m, P, 3]
    normals: torch.Tensor | None = None  # [m, P, 3]


@dataclass
class TrainResult:
    steps: int
    "Optimizer steps done in total (including those before a resume)."
    losses: list[float] = field(default_factory=list)
    "The loss of each step this call ran (the global batch's mean)."
    export: Path | None = None
    "The release-layout checkpoint base (``.json`` / ``.safetensors``) when the run finished."


def network_config(variant: str, overrides: dict, kind: type) -> SSFlowConfig | SSDecoderConfig:
    """A backend variant with ``overrides`` applied, checked like a release JSON."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r} (known: {', '.join(VARIANTS)})")
    base = VARIANTS[variant]
    if not isinstance(base, kind):
        raise ValueError(f"variant {variant!r} is a {type(base).__name__}, not a {kind.__name__}")
    try:
        config = dataclasses.replace(base, **{k: tuple(v) if isinstance(v, list) else v
                                              for k, v in overrides.items()})
    except TypeError as exc:
        raise ValueError(f"overrides of {variant}: {exc}") from None
    check_values(config)
    check_supported(config)
    return config  # type: ignore[return-value]


def build_flow(config: TrainConfig, device: torch.device) -> tuple[nn.Module, SSFlowConfig]:
    """The trainable flow (float32, train mode): fresh weights from the run seed, or a release's weights."""
    model_cfg = config.model
    if model_cfg.init:
        loaded = load_network(Path(model_cfg.init), "sparse_structure_flow_model", device)
        flow_cfg = loaded.config
        torch.manual_seed(config.train.seed)
        model = build_network(flow_cfg, device)
        model.load_state_dict(loaded.state_dict(), strict=True)
    else:
        flow_cfg = network_config(model_cfg.variant, model_cfg.overrides, SSFlowConfig)
        torch.manual_seed(config.train.seed)
        model = build_network(flow_cfg, device)
    return model.float().train().requires_grad_(True), flow_cfg


def build_decoder(config: TrainConfig, device: torch.device) -> nn.Module:
    """The frozen structure decoder of the regulariser: a release's, or a seeded random one of a variant."""
    dec = config.decoder
    if dec.release:
        model = load_network(Path(dec.release), "sparse_structure_decoder", device)
    else:
        from backend.models.testing import random_network

        model, _ = random_network(network_config(dec.variant, dec.overrides, SSDecoderConfig), dec.seed)
    return model.to(device).float().eval().requires_grad_(False)


def make_batch(assets: list[Asset], seeds: list[int], train: TrainSection, device: torch.device) -> Batch:
    """Stack assets with their per-sample draws (noise, t, dropout, then surface points)."""
    draws = [draw_sample(s, tuple(a.latent.shape), train.t_mean, train.t_std, train.p_uncond)
             for a, s in zip(assets, seeds)]
    cond = torch.stack([torch.zeros_like(a.cond) if d.drop_cond else a.cond for a, d in zip(assets, draws)])
    batch = Batch(torch.stack([a.latent for a in assets]), cond, torch.stack([d.noise for d in draws]),
                  torch.tensor([d.t for d in draws], dtype=torch.float32))
    if train.normal_weight > 0:
        picks = [_pick_points(a, train.normal_points, d.generator) for a, d in zip(assets, draws)]
        batch.points = torch.stack([a.points[i] for a, i in zip(assets, picks)])  # type: ignore[index]
        batch.normals = torch.stack([a.normals[i] for a, i in zip(assets, picks)])  # type: ignore[index]
    return Batch(**{k: None if v is None else v.to(device) for k, v in vars(batch).items()})


def _pick_points(asset: Asset, count: int, generator: torch.Generator) -> torch.Tensor:
    total = len(asset.points)  # type: ignore[arg-type]
    if total >= count:
        return torch.randperm(total, generator=generator)[:count]
    return torch.randint(total, (count,), generator=generator)


def batch_loss(model: nn.Module, decoder: nn.Module | None, batch: Batch, train: TrainSection,
               autocast: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Flow-matching MSE (+ weighted normal loss on the decoded clean-latent estimate) of one micro-batch."""
    x_t = diffuse(batch.x0, batch.noise, batch.t, train.sigma_min)
    device_type = batch.x0.device.type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast):
        velocity = model(x_t, 1000.0 * batch.t, batch.cond)
    velocity = velocity.float()
    mse = (velocity - target_velocity(batch.x0, batch.noise, train.sigma_min)).square().mean()
    terms = {"mse": mse.detach()}
    if decoder is None or train.normal_weight == 0:
        return mse, terms
    x0_hat = predicted_x0(x_t, velocity, batch.t, train.sigma_min)  # [m, 8, 16, 16, 16]
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast):
        logits = decoder(x0_hat)
    weights = (batch.t <= train.normal_t_max).float()
    normal = normal_loss(logits[:, 0].float(), batch.points, batch.normals, weights)  # type: ignore[arg-type]
    terms["normal"] = normal.detach()
    return mse + train.normal_weight * normal, terms


class SSFlowTrainer:
    """Holds the models, optimizer and data of one run on one process of ``world``."""

    def __init__(self, config: TrainConfig, data: Path, out: Path, world: World,
                 progress: ProgressFn | None = None) -> None:
        self.config, self.train, self.out, self.world = config, config.train, Path(out), world
        self.progress = progress or (lambda line: print(line, file=sys.stderr, flush=True))
        self.micro = self._micro_batch()
        self.model, self.flow_config = build_flow(config, world.device)
        self.decoder = build_decoder(config, world.device) if self.train.normal_weight > 0 else None
        self.data = AssetFolder(Path(data), need_surface=self.train.normal_weight > 0)
        if self.data.cond_shape[1] != self.flow_config.cond_channels:
            raise ValueError(f"the data's condition tokens have {self.data.cond_shape[1]} channels, the flow "
                             f"expects {self.flow_config.cond_channels} (cond_channels)")
        self.schedule = Schedule(len(self.data), self.train.seed)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.train.lr, betas=self.train.betas,
                                           weight_decay=self.train.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, self.train))
        self.ema = EMA(self.model, self.train.ema_rate)
        self.autocast = self._autocast()
        self.step = 0
        self.log = RunLog(self.out, enabled=world.is_main)
        self.ddp: nn.Module = self.model

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
        state, ema = ckpt.load_checkpoint(found[-1][1], self.model, self.optimizer, self.scheduler,
                                          self.world.device)
        self.ema.load_state_dict(ema)
        self.step = int(state["step"])
        self.log.truncate_after(self.step)
        return True

    def run(self, stop_at: int | None = None) -> TrainResult:
        """Train until ``steps`` (or until ``stop_at`` steps, checkpointed: a planned interruption)."""
        end = min(self.train.steps, stop_at if stop_at is not None else self.train.steps)
        self._wrap_ddp()
        result = TrainResult(self.step)
        clock = time.perf_counter()
        while self.step < end:
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

    def _wrap_ddp(self) -> None:
        if self.world.size > 1 and self.ddp is self.model:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.world.device.index] if self.world.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=ids)

    def _slots(self, k: int) -> list[int]:
        first = (self.world.rank * self.train.grad_accum + k) * self.micro
        return list(range(first, first + self.micro))

    def _optimizer_step(self) -> tuple[float, dict[str, float]]:
        accum = self.train.grad_accum
        total = torch.zeros((), device=self.world.device)
        sums: dict[str, torch.Tensor] = {}
        for k in range(accum):
            slots = self._slots(k)
            assets = [self.data[self.schedule.asset_index(self.step * self.train.batch_size + j)] for j in slots]
            seeds = [sample_seed(self.train.seed, self.step, j) for j in slots]
            batch = make_batch(assets, seeds, self.train, self.world.device)
            sync = contextlib.nullcontext() if k == accum - 1 or self.ddp is self.model else self.ddp.no_sync()
            with sync:
                loss, terms = batch_loss(self.ddp, self.decoder, batch, self.train, self.autocast)
                (loss / accum).backward()
            total += loss.detach() / accum
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value / accum
        grad_norm = self._clip()
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.model)
        terms_out = {k: float(mean_over_world(v, self.world)) for k, v in sums.items()}
        terms_out["grad_norm"] = grad_norm
        return float(mean_over_world(total, self.world)), terms_out

    def _clip(self) -> float:
        params = [p for p in self.model.parameters() if p.grad is not None]
        if self.train.grad_clip > 0:
            return float(torch.nn.utils.clip_grad_norm_(params, self.train.grad_clip))
        return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])))

    def _log(self, loss: float, terms: dict[str, float], clock: float) -> None:
        record = {"step": self.step, "loss": loss, **terms, "lr": self.scheduler.get_last_lr()[0],
                  "samples": self.step * self.train.batch_size}
        self.log.write(record)
        if self.world.is_main:
            rate = self.step / max(time.perf_counter() - clock, 1e-9)
            extra = " ".join(f"{k} {v:.4g}" for k, v in terms.items())
            self.progress(f"step {self.step}/{self.train.steps} loss {loss:.4g} {extra} ({rate:.2f} steps/s)")

    def _save(self) -> None:
        if self.world.is_main:
            extra = {"config": config_to_dict(self.config), "world_size": self.world.size}
            ckpt.save_checkpoint(self.out, self.step, self.model, self.ema.state_dict(), self.optimizer,
                                 self.scheduler, extra)
            ckpt.prune_checkpoints(self.out, self.train.keep_checkpoints)
        barrier(self.world)

    def export_state(self) -> dict[str, torch.Tensor]:
        """The weights the export holds: the EMA (default) or the raw model, buffers included."""
        if self.train.export == "ema":
            return self.ema.model_state(self.model)
        return {k: v.detach().float() for k, v in self.model.state_dict().items()}

    def _export(self) -> Path:
        base = self.out / "export" / "ckpts" / self.train.export_name
        if self.world.is_main:
            write_release_checkpoint(base, self.flow_config, self.export_state())
            self.progress(f"wrote {base}.json and {base}.safetensors (release layout)")
        barrier(self.world)
        return base


def train_ss_flow(config: TrainConfig, data: Path, out: Path, world: World, *, resume: bool = False,
                  stop_at: int | None = None, progress: ProgressFn | None = None) -> TrainResult:
    """Train the sparse-structure flow on the assets of ``data``; checkpoints, logs and export go to ``out``."""
    out = Path(out)
    if world.is_main:
        out.mkdir(parents=True, exist_ok=True)
    barrier(world)
    trainer = SSFlowTrainer(config, data, out, world, progress)
    if resume and trainer.resume() and world.is_main:
        trainer.progress(f"resumed at step {trainer.step}")
    return trainer.run(stop_at)
