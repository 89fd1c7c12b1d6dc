"""The NoRLD geometry stage as the release runs it: normal map -> DINOv2 -> structure -> latent -> surface.

Noise is drawn exactly as the official pipeline does (a CPU generator seeded after the image encoding:
the structure noise first, then the latent noise in coordinate order), so a seed gives the official
result up to floating-point differences.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..devices import Placement
from ..errors import EmptyResult
from ..jobs import JobContext
from ..memory import StageMemory
from ..models.dinov2 import preprocess_normal_map
from ..models.loading import PipelineConfig, load_dinov2, load_network, read_pipeline_json
from ..nn.sparse_tensor import SparseTensor
from ..stage_timer import StageTimer

MESH_RESOLUTION = 256


@dataclass(frozen=True)
class GeometryParams:
    seed: int = 0
    ss_steps: int = 50
    ss_guidance: float = 3.0
    ss_rescale_t: float = 0.0
    "Structure stage's time warp (``sampling.flow_time_grid``); 0: the release's (pipeline.json)."
    slat_steps: int = 6
    slat_guidance: float = 3.0
    extraction: str = "marching_cubes"
    multiview_mode: str = "stochastic"
    "How several views condition the flows (``sampling.MULTIVIEW_MODES``); one view ignores it."
    sampler: str = "euler"
    "Flow solver of both stages (``sampling_heun.SAMPLERS``): the release's euler, or heun."


@dataclass
class GeometryModels:
    """The five networks of the geometry stage, on one device, plus the release's pipeline settings."""

    pipeline: PipelineConfig
    dinov2: nn.Module
    ss_flow: nn.Module
    ss_decoder: nn.Module
    slat_flow: nn.Module
    mesh_decoder: nn.Module
    placement: Placement
    memory: StageMemory | None = field(default=None, compare=False)
    "Which networks are on the device per stage (backend/memory.py); None: all of them, all the time."

    @classmethod
    def load(cls, trellis: Path, dinov2: Path, placement: Placement, memory: str = "resident") -> "GeometryModels":
        """Load every network from the release folders (strict keys and shapes), onto the device (``resident``)
        or into CPU memory (``offload``: each stage moves its networks to the device while it runs)."""
        stages = StageMemory(placement.device, memory)
        dev, dtype = stages.home, placement.dtype
        nets = {name: load_network(trellis, name, dev, dtype).eval() for name in (
            "sparse_structure_flow_model", "sparse_structure_decoder", "slat_flow_model", "slat_decoder_mesh")}
        return cls(read_pipeline_json(trellis), load_dinov2(dinov2, dev).eval(),
                   nets["sparse_structure_flow_model"], nets["sparse_structure_decoder"],
                   nets["slat_flow_model"], nets["slat_decoder_mesh"], placement, stages)


@torch.inference_mode()
def generate_geometry(models: GeometryModels, normal_image: np.ndarray | list[np.ndarray], params: GeometryParams,
                      ctx: JobContext) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Normal-map image [H, W, 3] uint8 (or a list of views, each [H, W, 3]) -> (vertices [V, 3] float32,
    faces [F, 3] int32, stage seconds). Several views condition both flows as ``params.multiview_mode``."""
    lap = StageTimer()
    views = normal_image if isinstance(normal_image, list) else [normal_image]
    memory = models.memory or StageMemory(models.placement.device, "resident")
    ctx.step("condition", 0, 1, f"encoding {len(views)} normal map(s)")
    with memory.stage("condition", models.dinov2):
        cond = torch.cat([encode_condition(models, view) for view in views])  # [V, 1374, 1024]
    generator = torch.Generator("cpu").manual_seed(params.seed)
    lap("condition")
    with memory.stage("structure", models.ss_flow, models.ss_decoder):
        coords = sample_structure(models, cond, generator, params, ctx)
    lap("structure")
    with memory.stage("latent", models.slat_flow, voxels=len(coords)):
        slat = sample_latent(models, cond, coords, generator, params, ctx)
    lap("latent")
    ctx.step("decoding", 0, 1, f"decoding {len(coords)} voxels")
    with memory.stage("decode", models.mesh_decoder):
        vertices, faces = decode_surface(models, slat, params.extraction, ctx)
    lap("decode")
    return vertices, faces, lap.timings


def networks(models: GeometryModels) -> tuple[nn.Module, ...]:
    """The five networks, in the order their stages run."""
    return models.dinov2, models.ss_flow, models.ss_decoder, models.slat_flow, models.mesh_decoder


def encode_condition(models: GeometryModels, normal_image: np.ndarray) -> torch.Tensor:
    """DINOv2 tokens of the normal map, layer-normed: [1, 1374, 1024]."""
    pixels = preprocess_normal_map(normal_image).to(models.placement.device)  # [1, 3, 518, 518]
    return models.dinov2(pixels)  # float32; each flow model casts it to its compute dtype


def sample_structure(models: GeometryModels, cond: torch.Tensor, generator: torch.Generator,
                     params: GeometryParams, ctx: JobContext) -> torch.Tensor:
    """Sample the 16^3 structure latent, decode 64^3 occupancy; occupied voxels as int32 [N, 4] (b, x, y, z)."""
    from ..sampling_heun import views_sampler

    device = models.placement.device
    noise = torch.randn(1, 8, 16, 16, 16, generator=generator).to(device)  # drawn on the CPU, as the release
    sampler = models.pipeline.sparse_structure_sampler
    latent = views_sampler(params.sampler)(
        models.ss_flow, noise, cond, torch.zeros_like(cond[:1]), mode=params.multiview_mode, steps=params.ss_steps,
        cfg_strength=params.ss_guidance, cfg_interval=sampler.cfg_interval,
        rescale_t=params.ss_rescale_t or sampler.rescale_t, batch_cfg=batch_guidance(models),
        callback=ctx.stepper("structure"))
    logits = models.ss_decoder(latent)  # [1, 1, 64, 64, 64]
    coords = torch.argwhere(logits[:, 0] > 0).int()  # [N, 4] in C order, as the release
    if len(coords) == 0:
        raise EmptyResult("The structure stage found no occupied voxels.",
                          hint="Try another seed, more structure steps, or check the object's mask.")
    return coords


def sample_latent(models: GeometryModels, cond: torch.Tensor, coords: torch.Tensor, generator: torch.Generator,
                  params: GeometryParams, ctx: JobContext) -> SparseTensor:
    """Sample the structured latent on ``coords`` and de-normalise it with the release's mean/std."""
    from ..sampling_heun import views_sampler

    device = models.placement.device
    noise = torch.randn(len(coords), 8, generator=generator).to(device)  # in coordinate order
    sampler = models.pipeline.slat_sampler
    feats = views_sampler(params.sampler)(
        SparseFlow(models.slat_flow, coords), noise, cond, torch.zeros_like(cond[:1]), mode=params.multiview_mode,
        steps=params.slat_steps,
        cfg_strength=params.slat_guidance, cfg_interval=sampler.cfg_interval, rescale_t=sampler.rescale_t,
        batch_cfg=batch_guidance(models), callback=ctx.stepper("latent"))
    std = torch.tensor(models.pipeline.slat_std, device=device, dtype=feats.dtype)
    mean = torch.tensor(models.pipeline.slat_mean, device=device, dtype=feats.dtype)
    return SparseTensor(coords, feats * std + mean)


def batch_guidance(models: GeometryModels) -> bool:
    """Run cond and uncond as one batch on accelerators; on a CPU two passes are faster (bench_sampler:
    a batched guided step costs 1.09x (structure) and 1.14x (latent) the two separate passes)."""
    return models.placement.device.type != "cpu"


class SparseFlow:
    """Adapts the sparse flow model to the sampler's dense ``(x [B * N, 8], t [B], cond [B, ...])`` calls."""

    def __init__(self, model: nn.Module, coords: torch.Tensor) -> None:
        self.model, self.coords = model, coords
        self._by_batch: dict[int, SparseTensor] = {}  # reused so kernel maps are built once, not every step

    def __call__(self, feats: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        batch = len(t)
        if batch not in self._by_batch:  # cond and uncond batched: the same voxels under batch indices 0..B-1
            coords = torch.cat([torch.cat([torch.full_like(self.coords[:, :1], b), self.coords[:, 1:]], 1)
                                for b in range(batch)])
            self._by_batch[batch] = SparseTensor(coords, feats)
        return self.model(self._by_batch[batch].replace(feats), t, cond).feats


def decode_surface(models: GeometryModels, slat: SparseTensor, extraction: str,
                   ctx: JobContext) -> tuple[np.ndarray, np.ndarray]:
    """Mesh decoder (101 channels per 256^3 cube) -> surface in Blender's frame."""
    # a tensor of its own (no shared cache), so the kernel maps at 128^3 and 256^3 die with ``out`` below; only
    # the channels the extraction reads (the largest tensor of the decoder: 32 or 53 float32 of 101 a cube)
    channels = 53 if extraction == "flexicubes" else 32
    out = models.mesh_decoder(SparseTensor(slat.coords, slat.feats), channels=channels)  # [M, 4] at 256^3
    coords, feats = out.coords[:, 1:], out.feats.float()  # [M, 3], [M, channels]
    del out
    ctx.step("surface", 0, 1, f"extracting the surface ({extraction})")
    if extraction == "flexicubes":
        from ..mesh.flexicubes import extract_flexicubes

        return extract_flexicubes(coords, feats, MESH_RESOLUTION)
    from ..mesh.marching_cubes import extract_marching_cubes

    return extract_marching_cubes(coords, feats, MESH_RESOLUTION)
