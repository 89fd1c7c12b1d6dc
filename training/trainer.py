"""The sparse-structure flow trainer: flow matching (+ the normal regulariser), EMA, accumulation, DDP, resume.

One optimizer step takes ``batch_size`` samples over all processes: process ``r`` runs ``grad_accum``
micro-batches of ``batch_size / (world * grad_accum)`` samples. Sample slot ``j`` of step ``s`` reads the asset
``Schedule.asset_index(s * batch_size + j)`` and draws its noise, time, condition dropout and surface points from
a generator seeded by ``(seed, s, j)``. Nothing random depends on which process runs a slot or on what ran
before, so a resumed run repeats an uninterrupted one and 2 processes repeat 1 with the same global batch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from backend.models.configs import VARIANTS, SSDecoderConfig, SSFlowConfig, check_supported, check_values
from backend.models.loading import build_network, load_network

from .config import TrainConfig, TrainSection, config_to_dict
from .data import Asset, AssetFolder, Schedule, sample_seed
from .distributed import World, barrier
from .export import write_release_checkpoint
from .flow_matching import diffuse, draw_sample, predicted_x0, target_velocity
from .loop import LoopTrainer, ProgressFn, TrainResult, run_training
from .lr_schedule import lr_factor
from .normal_loss import normal_loss


@dataclass
class Batch:
    x0: torch.Tensor  # [m, 8, 16, 16, 16]
    cond: torch.Tensor  # [m, L, C], zeros where dropped
    noise: torch.Tensor  # like x0
    t: torch.Tensor  # [m] in (0, 1)
    points: torch.Tensor | None = None  # [m, P, 3]
    normals: torch.Tensor | None = None  # [m, P, 3]


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


class SSFlowTrainer(LoopTrainer):
    """The sparse-structure flow, its data and (with the regulariser) the frozen decoder, in the shared loop."""

    def __init__(self, config: TrainConfig, data: Path, out: Path, world: World,
                 progress: ProgressFn | None = None) -> None:
        self._begin(config, out, world, progress)
        self.model, self.flow_config = build_flow(config, world.device)
        self.decoder = build_decoder(config, world.device) if self.train.normal_weight > 0 else None
        self.data = AssetFolder(Path(data), need_surface=self.train.normal_weight > 0)
        check_cond_channels(self.data.cond_shape[1], self.flow_config.cond_channels)
        self.schedule = Schedule(len(self.data), self.train.seed)
        self._finish(self.model, self.model.parameters(), lambda s: lr_factor(s, self.train))

    def _micro_assets(self, k: int) -> tuple[list, list[int]]:
        """Micro-batch ``k``'s assets and per-sample seeds."""
        slots = self._slots(k)
        assets = [self.data[self.schedule.asset_index(self.step * self.train.batch_size + j)] for j in slots]
        return assets, [sample_seed(self.train.seed, self.step, j) for j in slots]

    def _micro_loss(self, k: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        assets, seeds = self._micro_assets(k)
        batch = make_batch(assets, seeds, self.train, self.world.device)
        return batch_loss(self.ddp, self.decoder, batch, self.train, self.autocast)

    def _config_dict(self) -> dict:
        return config_to_dict(self.config)

    def _export_name(self) -> str:
        return self.train.export_name

    def _export(self) -> Path:
        base = self.out / "export" / "ckpts" / self._export_name()
        if self.world.is_main:
            write_release_checkpoint(base, self.flow_config, self.export_state())
            self.progress(f"wrote {base}.json and {base}.safetensors (release layout)")
        barrier(self.world)
        return base


def check_cond_channels(data_channels: int, flow_channels: int) -> None:
    if data_channels != flow_channels:
        raise ValueError(f"the data's condition tokens have {data_channels} channels, the flow "
                         f"expects {flow_channels} (cond_channels)")


def train_ss_flow(config: TrainConfig, data: Path, out: Path, world: World, *, resume: bool = False,
                  stop_at: int | None = None, progress: ProgressFn | None = None) -> TrainResult:
    """Train the sparse-structure flow on the assets of ``data``; checkpoints, logs and export go to ``out``."""
    return run_training(lambda: SSFlowTrainer(config, data, out, world, progress), out, world,
                        resume=resume, stop_at=stop_at)
