"""The structured-latent flow trainer: flow matching on sparse voxel latents (+ the decoded-normal regulariser).

Same bookkeeping as the structure trainer (``trainer.SSFlowTrainer``, which this subclasses: EMA, gradient
accumulation, DDP, checkpoints, exact resume, logs, release export); what differs is the sample: an asset is
``N`` voxels with 8 features, a micro-batch packs its samples into one sparse tensor (batch index in column 0)
and the loss is the mean over samples of each sample's mean squared velocity error, so a sample counts the
same whatever its voxel count and however a batch is split over processes and accumulation steps.

The regulariser decodes the clean-latent estimate ``x0_hat`` (de-normalised with the release's
``slat_normalization``) with the frozen mesh decoder and compares the decoded SDF's normals with the true ones
at surface points (``slat_normals.py``).

Config defaults: the ``[model]`` / ``[decoder]`` defaults name the structure stage's tiny networks; this
trainer reads those untouched defaults as ``tiny_slat_flow`` / ``tiny_mesh_dec``, and an untouched
``export_name`` as ``slat_flow_trained``. ``[model] init`` reads a release's ``slat_flow_model`` and
``[decoder] release`` its ``slat_decoder_mesh`` and ``pipeline.json`` normalisation; a fresh decoder variant
uses no normalisation (mean 0, std 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from backend.models.configs import MeshDecoderConfig, SLatFlowConfig
from backend.models.loading import build_network, load_network, read_pipeline_json
from backend.nn.sparse_tensor import SparseTensor

from .config import DecoderSection, ModelSection, TrainConfig, TrainSection
from .data import Schedule
from .distributed import World
from .flow_matching import diffuse, draw_sample, predicted_x0, target_velocity
from .loop import ProgressFn, TrainResult, run_training
from .lr_schedule import lr_factor
from .slat_data import SLatAsset, SLatAssetFolder
from .slat_normals import decoded_normal_loss
from .trainer import SSFlowTrainer, check_cond_channels, network_config

FLOW_VARIANT = "tiny_slat_flow"
DECODER_VARIANT = "tiny_mesh_dec"
EXPORT_NAME = "slat_flow_trained"


@dataclass
class SLatBatch:
    coords: torch.Tensor  # [M, 4] int32 (sample, x, y, z) over the micro-batch's m samples
    x0: torch.Tensor  # [M, 8] normalised clean latents
    cond: torch.Tensor  # [m, L, C], zeros where dropped
    noise: torch.Tensor  # [M, 8]
    t: torch.Tensor  # [m] in (0, 1)
    points: torch.Tensor | None = None  # [m, P, 3]
    normals: torch.Tensor | None = None  # [m, P, 3]

    @property
    def sample(self) -> torch.Tensor:
        """[M] int64: the sample of each voxel row."""
        return self.coords[:, 0].long()


@dataclass(frozen=True)
class Normalisation:
    """``decoded input = feats * std + mean`` per channel (the release's ``slat_normalization``)."""

    mean: torch.Tensor  # [8]
    std: torch.Tensor  # [8]


def flow_variant(model: ModelSection) -> str:
    return FLOW_VARIANT if model.variant == ModelSection.variant else model.variant


def decoder_variant(decoder: DecoderSection) -> str:
    return DECODER_VARIANT if decoder.variant == DecoderSection.variant else decoder.variant


def export_name(train: TrainSection) -> str:
    return EXPORT_NAME if train.export_name == TrainSection.export_name else train.export_name


def build_slat_flow(config: TrainConfig, device: torch.device) -> tuple[nn.Module, SLatFlowConfig]:
    """The trainable latent flow (float32, train mode): fresh from the run seed, or a release's weights."""
    if config.model.init:
        loaded = load_network(Path(config.model.init), "slat_flow_model", device)
        flow_cfg = loaded.config
        torch.manual_seed(config.train.seed)
        model = build_network(flow_cfg, device)
        model.load_state_dict(loaded.state_dict(), strict=True)
    else:
        flow_cfg = network_config(flow_variant(config.model), config.model.overrides, SLatFlowConfig)
        torch.manual_seed(config.train.seed)
        model = build_network(flow_cfg, device)
    return model.float().train().requires_grad_(True), flow_cfg  # type: ignore[return-value]


def build_mesh_decoder(config: TrainConfig, device: torch.device) -> tuple[nn.Module, Normalisation]:
    """The frozen mesh decoder of the regulariser and the normalisation its input takes."""
    dec = config.decoder
    if dec.release:
        model = load_network(Path(dec.release), "slat_decoder_mesh", device)
        pipeline = read_pipeline_json(Path(dec.release))
        norm = Normalisation(torch.tensor(pipeline.slat_mean, dtype=torch.float32),
                             torch.tensor(pipeline.slat_std, dtype=torch.float32))
    else:
        from backend.models.testing import random_network

        model, _ = random_network(network_config(decoder_variant(dec), dec.overrides, MeshDecoderConfig), dec.seed)
        norm = Normalisation(torch.zeros(8), torch.ones(8))
    return model.to(device).float().eval().requires_grad_(False), Normalisation(norm.mean.to(device),
                                                                                 norm.std.to(device))


def _pick_points(asset: SLatAsset, count: int, generator: torch.Generator) -> torch.Tensor:
    total = len(asset.points)  # type: ignore[arg-type]
    if total >= count:
        return torch.randperm(total, generator=generator)[:count]
    return torch.randint(total, (count,), generator=generator)


def make_slat_batch(assets: list[SLatAsset], seeds: list[int], train: TrainSection,
                    device: torch.device) -> SLatBatch:
    """Pack assets into one sparse batch with their per-sample draws (noise, t, dropout, surface points)."""
    draws = [draw_sample(s, tuple(a.feats.shape), train.t_mean, train.t_std, train.p_uncond)
             for a, s in zip(assets, seeds)]
    coords = torch.cat([torch.cat([torch.full((len(a.coords), 1), b, dtype=torch.int32), a.coords], 1)
                        for b, a in enumerate(assets)])
    cond = torch.stack([torch.zeros_like(a.cond) if d.drop_cond else a.cond for a, d in zip(assets, draws)])
    batch = SLatBatch(coords, torch.cat([a.feats for a in assets]), cond, torch.cat([d.noise for d in draws]),
                      torch.tensor([d.t for d in draws], dtype=torch.float32))
    if train.normal_weight > 0:
        picks = [_pick_points(a, train.normal_points, d.generator) for a, d in zip(assets, draws)]
        batch.points = torch.stack([a.points[i] for a, i in zip(assets, picks)])  # type: ignore[index]
        batch.normals = torch.stack([a.normals[i] for a, i in zip(assets, picks)])  # type: ignore[index]
    return SLatBatch(**{k: None if v is None else v.to(device) for k, v in vars(batch).items()})


def per_sample_mean(values: torch.Tensor, sample: torch.Tensor, count: int) -> torch.Tensor:
    """[M] row values -> [count] mean per sample."""
    total = torch.zeros(count, dtype=values.dtype, device=values.device).index_add_(0, sample, values)
    rows = torch.zeros(count, dtype=values.dtype, device=values.device).index_add_(0, sample, torch.ones_like(values))
    return total / rows.clamp(min=1.0)


def slat_batch_loss(model: nn.Module, decoder: nn.Module | None, norm: Normalisation | None, batch: SLatBatch,
                    train: TrainSection, autocast: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Flow-matching MSE (+ weighted decoded-normal loss) of one micro-batch."""
    m = len(batch.t)
    t_rows = batch.t[batch.sample]  # [M]
    x_t = diffuse(batch.x0, batch.noise, t_rows, train.sigma_min)  # [M, 8]
    device_type = batch.x0.device.type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast):
        velocity = model(SparseTensor(batch.coords, x_t), 1000.0 * batch.t, batch.cond).feats
    velocity = velocity.float()
    error = (velocity - target_velocity(batch.x0, batch.noise, train.sigma_min)).square().mean(1)  # [M]
    mse = per_sample_mean(error, batch.sample, m).mean()
    terms = {"mse": mse.detach()}
    if decoder is None or norm is None or train.normal_weight == 0:
        return mse, terms
    x0_hat = predicted_x0(x_t, velocity, t_rows, train.sigma_min) * norm.std + norm.mean  # [M, 8]
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast):
        decoded = decoder(SparseTensor(batch.coords, x0_hat))  # coords [64 M, 4] at 256^3
    rows = decoded.sample_rows()
    cubes = [decoded.coords[r, 1:] for r in rows]
    sdf = [decoded.feats[r, :8].float() for r in rows]
    weights = (batch.t <= train.normal_t_max).float()
    normal = decoded_normal_loss(cubes, sdf, batch.points, batch.normals, weights)  # type: ignore[arg-type]
    terms["normal"] = normal.detach()
    return mse + train.normal_weight * normal, terms


class SLatFlowTrainer(SSFlowTrainer):
    """The structure trainer's loop with sparse samples, the latent flow and the mesh decoder."""

    def __init__(self, config: TrainConfig, data: Path, out: Path, world: World,  # noqa: D107
                 progress: ProgressFn | None = None) -> None:
        self._begin(config, out, world, progress)
        self.model, self.flow_config = build_slat_flow(config, world.device)
        self.decoder, self.norm = (build_mesh_decoder(config, world.device) if self.train.normal_weight > 0
                                   else (None, None))
        self.data = SLatAssetFolder(Path(data), need_surface=self.train.normal_weight > 0)
        check_cond_channels(self.data.cond_shape[1], self.flow_config.cond_channels)
        self.schedule = Schedule(len(self.data), self.train.seed)
        self._finish(self.model, self.model.parameters(), lambda s: lr_factor(s, self.train))

    def _micro_loss(self, k: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        assets, seeds = self._micro_assets(k)
        batch = make_slat_batch(assets, seeds, self.train, self.world.device)
        return slat_batch_loss(self.ddp, self.decoder, self.norm, batch, self.train, self.autocast)

    def _export_name(self) -> str:
        return export_name(self.train)


def train_slat_flow(config: TrainConfig, data: Path, out: Path, world: World, *, resume: bool = False,
                    stop_at: int | None = None, progress: ProgressFn | None = None) -> TrainResult:
    """Train the structured-latent flow on the assets of ``data``; checkpoints, logs and export go to ``out``."""
    return run_training(lambda: SLatFlowTrainer(config, data, out, world, progress), out, world,
                        resume=resume, stop_at=stop_at)
