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

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..data import Schedule, sample_seed
from ..distributed import World, barrier
from ..loop import LoopTrainer, ProgressFn, TrainResult, run_training
from .config import NirneConfig, nirne_config_to_dict
from .data import SampleFolder
from .export import split_states, write_release_folder
from .networks import Networks, fresh_networks, load_networks
from .objective import alphas_cumprod, draw_noise, inject_noise, regression_loss

STAGES = ("real", "synthetic")


@dataclass
class Split:
    """One domain's samples on the run's device, with their cached latents."""

    clean: torch.Tensor  # [N, 4, h, w] image latents
    target: torch.Tensor  # [N, 4, h, w] normal latents
    normals: torch.Tensor  # [N, 3, H, W]
    masks: torch.Tensor  # [N, H, W] bool
    schedule: Schedule


NirneResult = TrainResult  # ``export``: the yoso-normal release folder written when the run finished


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


class NirneTrainer(LoopTrainer):
    """The two streams, the frozen VAE and the two domains' cached latents, in the shared loop."""

    def __init__(self, config: NirneConfig, data: Path, out: Path, world: World,
                 progress: ProgressFn | None = None) -> None:
        self._begin(config, out, world, progress)
        self.nets = build_networks(config)
        self.streams = self.nets.streams.to(world.device)
        self.vae = self.nets.vae.to(world.device)
        self.splits = self._load_splits(Path(data))
        self.abar = alphas_cumprod(world.device)
        self.trainable = [(n, p) for n, p in self.streams.named_parameters() if p.requires_grad]
        self._finish(self.streams, [p for _, p in self.trainable], self._lr_factor)
        self._stage: str | None = None

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

    def _before_step(self) -> None:
        self._enter_stage(self.stage_of(self.step))

    def _enter_stage(self, stage: str) -> None:
        """Freeze or unfreeze the clean stream, and (re)wrap DDP over what trains now."""
        if stage == self._stage:
            return
        for name, param in self.trainable:
            if name.startswith("controlnet."):
                param.requires_grad_(stage == "real")
        self._stage = stage
        self._wrap_ddp()
        if self.world.is_main:
            self.progress(f"stage {stage} from step {self.step}")

    def _micro_loss(self, k: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        stage, slots = self.stage_of(self.step), self._slots(k)
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

    def _log_fields(self) -> dict[str, int]:
        return {"stage": STAGES.index(self.stage_of(self.step - 1)) + 1}

    def _config_dict(self) -> dict:
        return nirne_config_to_dict(self.config)

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
    return run_training(lambda: NirneTrainer(config, data, out, world, progress), out, world,
                        resume=resume, stop_at=stop_at)
