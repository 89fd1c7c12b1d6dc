"""The device memory a hi3dgen run will need, predicted before it starts, and the refusal when it cannot fit.

Per stage: weights (the parameter count of its networks, read from the safetensors headers, times the
bytes of the dtype they run in: the placement's dtype, float32 for DINOv2) plus activations (a model of
the chosen settings: pixels for NiRNE, tokens for the flows, voxels for the decoder, times bytes per
element measured by ``bench/bench_memory.py`` at the official sizes and rounded up; see ``ACTIVATION``).
The latent and decode stages do not know their voxel count before the structure stage: the plan uses
``VOXEL_BOUND`` (an upper bound for surface structures at 64^3) and the pipeline checks again with the
real count before the latent stage.

Peak: ``offload`` = the largest (stage weights + stage activations); ``resident`` = every weight + the
largest activations. The budget is the device's free memory (``torch.cuda.mem_get_info``, plus what this
process's caching allocator holds unused, plus the weights this engine already has on the device), or
``--memory-budget`` GiB. On the CPU (and MPS without a reliable query) the plan is reported but enforced
only when ``--memory-budget`` is given: the operating system pages instead of failing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InsufficientMemory

if TYPE_CHECKING:
    import torch

GIB = 1024**3
STAGES = ("normals-encode", "normals", "normals-decode", "condition", "structure", "latent", "decode")
"NiRNE's three sub-stages (VAE encode; control branch + denoiser; VAE decode), then the geometry's four."
SHARED_WEIGHTS = ("normals-encode",)
"Stages whose networks a later stage lists too (the VAE): counted once in the resident sum."
VOXEL_BOUND = 40_000
"""Occupied 64^3 voxels assumed before the structure stage has run: twice the TRELLIS paper's average
structure (about 20k; a cube's surface spanning the grid has 6 x 64^2 = 24.6k). A larger structure is caught
by the check with the real count before the latent stage."""
HEADROOM = 1.10
"The prediction times this must fit the budget (allocator rounding, kernel workspaces)."
CUDA_CONTEXT = 0.4 * GIB
"What the CUDA context and the kernels' images take outside torch's allocator (about 300-500 MB)."

ACTIVATION = {
    "normals-encode": 1400.0,  # bytes per processed pixel (NiRNE's VAE encoder at R x R; measured 1285 at 768^2)
    "normals": 380.0,  # bytes per processed pixel (control branch + denoiser at R/8 x R/8 and the input; 339)
    "normals-decode": 1700.0,  # bytes per processed pixel (the VAE decoder at R x R; measured 1544)
    "condition": 70e6,  # bytes per view (DINOv2 at 518^2 in float32; measured 65 MB)
    "structure": 115e6,  # bytes per pass of the batch (ss-flow on 4096 tokens, then the 64^3 decoder; 109 MB)
    "latent": 26_000.0,  # bytes per voxel per pass (slat-flow; measured 25.1 kB at 4.7k voxels, 17.5 kB at 20k)
    "decode": 75_000.0,  # bytes per 64^3 voxel (its 64 cubes at 256^3 in the last subdivision block: the
    # subdivided [M, 192] input, two [M, 96], the 256^3 kernel map), plus DECODE_FIXED; measured 1.50 GiB at
    # 20,168 voxels (74 kB a voxel + the fixed part)
}
"""Activation bytes of each stage per unit of its size at 2-byte precision (float32 doubles the flows' and
NiRNE's); measured at the official sizes by ``bench/bench_memory.py`` and rounded up (see its output)."""
DECODE_FIXED = 200 * 2**20
"The decode stage's part that does not grow with the voxels: the group norm's float32 row chunks (2 x 2^18 x 96)."


@dataclass(frozen=True)
class StageEstimate:
    name: str
    weights: int
    "Bytes of the stage's networks on the device."
    activations: int
    "Bytes of the largest set of intermediate tensors alive at once."


@dataclass(frozen=True)
class MemoryPlan:
    stages: tuple[StageEstimate, ...]
    mode: str
    "``offload`` or ``resident`` (backend/memory.py)."

    @property
    def peak(self) -> int:
        if not self.stages:
            return 0
        if self.mode == "offload":
            return max(s.weights + s.activations for s in self.stages)
        return (sum(s.weights for s in self.stages if s.name not in SHARED_WEIGHTS)
                + max(s.activations for s in self.stages))

    def peak_stage(self) -> str:
        if not self.stages:
            return ""
        key = (lambda s: s.weights + s.activations) if self.mode == "offload" else (lambda s: s.activations)
        return max(self.stages, key=key).name

    def stage_summary(self) -> str:
        """'offload; GiB per stage: normals 3.3, condition 1.2, ...' (each stage's weights + activations)."""
        parts = ", ".join(f"{s.name} {(s.weights + s.activations) / GIB:.1f}" for s in self.stages)
        return f"{self.mode}; GiB per stage: {parts}"

    def describe(self) -> str:
        return f"predicted peak {self.peak / GIB:.1f} GiB ({self.stage_summary()})"

    def as_stats(self) -> dict[str, Any]:
        return {"mode": self.mode, "predicted_peak_gib": round(self.peak / GIB, 3),
                "stages": {s.name: {"weights_gib": round(s.weights / GIB, 3),
                                    "activations_gib": round(s.activations / GIB, 3)} for s in self.stages}}


def activation_bytes(stage: str, *, dtype_bytes: int, batch: int = 2, views: int = 1, voxels: int = VOXEL_BOUND,
                     normal_resolution: int = 768) -> int:
    """The activation model of ``stage`` (see ``ACTIVATION``); ``batch`` 2 when guidance runs batched."""
    scale = dtype_bytes / 2
    if stage.startswith("normals"):
        side = max(64, round(normal_resolution / 64) * 64)
        return int(ACTIVATION[stage] * side * side * scale)
    if stage == "condition":
        return int(ACTIVATION["condition"] * views)  # float32 whatever the placement
    if stage == "structure":
        return int(ACTIVATION["structure"] * batch * scale)
    if stage == "latent":
        return int(ACTIVATION["latent"] * voxels * batch * scale)
    if stage == "decode":
        return int(ACTIVATION["decode"] * voxels * max(1.0, scale) + DECODE_FIXED)
    raise ValueError(f"unknown stage {stage!r}")


def header_bytes(path: Path, dtype_bytes: int) -> int:
    """Bytes of every floating-point tensor of a safetensors file once loaded at ``dtype_bytes`` a value."""
    import math

    from .models.loading import read_layout

    return sum(math.prod(shape) * dtype_bytes for shape, kind in read_layout(path).values()
               if kind in ("F32", "F16", "BF16"))


def geometry_weight_files(trellis: Path, dinov2: Path) -> dict[str, list[Path]]:
    """Stage -> the safetensors files of its networks (the release layout)."""
    from .models.loading import read_pipeline_json

    models = read_pipeline_json(trellis).models
    ckpt = {name: trellis / f"{models[name]}.safetensors" for name in models}
    return {"condition": [dinov2 / "model.safetensors"],
            "structure": [ckpt["sparse_structure_flow_model"], ckpt["sparse_structure_decoder"]],
            "latent": [ckpt["slat_flow_model"]], "decode": [ckpt["slat_decoder_mesh"]]}


def plan_run(weight_files: dict[str, list[Path]], *, mode: str, dtype_bytes: int, batch: int, views: int = 1,
             voxels: int = VOXEL_BOUND, normal_resolution: int = 768) -> MemoryPlan:
    """The plan of the stages named in ``weight_files`` (DINOv2 in float32, the rest at ``dtype_bytes``)."""
    stages = []
    for name in STAGES:
        if name not in weight_files:
            continue
        width = 4 if name == "condition" else dtype_bytes
        weights = sum(header_bytes(path, width) for path in weight_files[name])
        stages.append(StageEstimate(name, weights, activation_bytes(
            name, dtype_bytes=dtype_bytes, batch=batch, views=views, voxels=voxels,
            normal_resolution=normal_resolution)))
    return MemoryPlan(tuple(stages), mode)


def device_budget(device: "torch.device", budget_gb: float, held: int = 0) -> int | None:
    """Bytes the plan may use on ``device``: ``budget_gb`` when set, else the free memory plus ``held`` (this
    engine's weights already there); None when it is not checked (CPU and MPS without a budget)."""
    import torch

    if budget_gb > 0:
        return int(budget_gb * GIB)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        unused = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + unused + held)
    return None


def check_plan(plan: MemoryPlan, budget: int | None, *, dtype_bytes: int, context: str = "serve",
               device_type: str = "cuda") -> None:
    """Raise ``InsufficientMemory`` when ``plan`` does not fit ``budget`` (None: not checked)."""
    if budget is None:
        return
    need = int(plan.peak * HEADROOM)
    if need <= budget:
        return
    raise InsufficientMemory(
        f"This run needs about {need / GIB:.1f} GiB of device memory ({plan.stage_summary()}), but only "
        f"{budget / GIB:.1f} GiB is free.", hint=refusal_hint(plan, dtype_bytes, context, device_type))


def refusal_hint(plan: MemoryPlan, dtype_bytes: int, context: str = "serve", device_type: str = "cuda") -> str:
    """What to change, the biggest saving first, in the words of the add-on or of the command line (offload
    and fp16 are not offered on the CPU, where the networks stay in RAM and fp32 is the fast precision)."""
    cli = context == "cli"
    tips = []
    if plan.mode == "resident" and device_type != "cpu":
        tips.append("use --memory offload" if cli else "set Memory to Offload")
    if dtype_bytes > 2 and device_type != "cpu":
        tips.append("run in fp16 (the CUDA default)")
    stage = plan.peak_stage()
    if stage.startswith("normals"):
        tips.append("lower normal_resolution (e.g. --param normal_resolution=512)" if cli
                    else "lower the NiRNE resolution, or give a normal map")
    elif stage in ("latent", "decode"):
        tips.append("use a tighter mask (fewer voxels)")
    tips.append("close other programs using the GPU, or choose the CPU device" if device_type != "cpu"
                else "close other programs, or use a machine with more memory")
    if cli:
        tips.append("or set --memory-budget to override the free-memory check")
    text = "; ".join(tips)
    return text[:1].upper() + text[1:] + "."
