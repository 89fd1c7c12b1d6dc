"""The hi3dgen engine's memory plan: predicted before a run (refused when it cannot fit), checked again with the
real voxel count before the latent stage, reported in the progress and in ``stats["memory"]``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..jobs import JobContext
from ..memory_plan import GIB, MemoryPlan, check_plan, device_budget, geometry_weight_files, plan_run

if TYPE_CHECKING:
    from .base import EngineRequest
    from .hi3dgen import Hi3DGenEngine


def plan_request(engine: Hi3DGenEngine, request: EngineRequest,
                 ctx: JobContext) -> tuple[MemoryPlan | None, Callable[[str, int], None] | None]:
    """The plan of this request on its device, and the check to run again at each stage with its voxel count;
    raises ``InsufficientMemory`` (hinted) when the plan cannot fit. (None, None) while a model it needs is
    not on disk yet (the engine plans again once it is downloaded)."""
    from ..devices import choose_placement
    from ..nirne.loading import component_files
    from ..weights import find_local
    from .hi3dgen import GEOMETRY_MODELS, NORMAL_MODEL

    settings, p = engine.settings, request.params
    placement = choose_placement(request.placement_name, settings.precision)
    nirne = p["normals"] == "nirne" or (p["normals"] == "auto" and request.normal_map is None)
    folders = {name: find_local(name, settings) for name in (*GEOMETRY_MODELS, *((NORMAL_MODEL,) if nirne else ()))}
    if any(folder is None for folder in folders.values()):
        return None, None
    files = geometry_weight_files(folders["trellis-normal"], folders["dinov2"])  # type: ignore[arg-type]
    if nirne:
        found, _ = component_files(folders[NORMAL_MODEL])  # type: ignore[arg-type]
        files.update({"normals-encode": [found["vae"]], "normals": [found["controlnet"], found["unet"]],
                      "normals-decode": [found["vae"]]})
    on_cpu = placement.device.type == "cpu"  # every network stays in RAM there: the resident sum, whatever mode
    plan_args = {"mode": "resident" if on_cpu else engine._memory_mode(request),
                 "dtype_bytes": placement.dtype.itemsize,
                 "batch": 1 if on_cpu else 2,  # guidance batched off the CPU
                 "views": 1 + len(request.views), "normal_resolution": p["normal_resolution"]}
    plan = plan_run(files, **plan_args)
    budget = device_budget(placement.device, settings.memory_budget_gb, held=held_bytes(engine, placement.device))
    ctx.step("memory", 0, 1, _line(plan, budget))
    check_plan(plan, budget, dtype_bytes=placement.dtype.itemsize, context=settings.context,
               device_type=placement.device.type)

    def recheck(stage: str, voxels: int) -> None:
        """Before the latent stage: the same plan with the structure's real voxel count."""
        if stage == "latent" and budget is not None:
            check_plan(plan_run(files, voxels=voxels, **plan_args), budget,
                       dtype_bytes=placement.dtype.itemsize, context=settings.context,
                       device_type=placement.device.type)

    return plan, recheck


def held_bytes(engine: Hi3DGenEngine, device: Any) -> int:
    """Bytes of this engine's networks already on ``device`` (free memory does not count them)."""
    nets: list[Any] = []
    if engine._geometry is not None:
        from ..pipelines.hi3dgen import networks

        nets.extend(networks(engine._geometry))
    if engine._nirne is not None and hasattr(engine._nirne, "networks"):
        nets.extend(engine._nirne.networks())
    total = 0
    for net in nets:
        for t in (*net.parameters(), *net.buffers()):
            if t.device.type == device.type:
                total += t.numel() * t.element_size()
    return total if device.type != "cpu" else 0


def _line(plan: MemoryPlan, budget: int | None) -> str:
    free = f"{budget / GIB:.1f} GiB free" if budget is not None else "not checked on this device"
    return f"memory: {plan.describe()}; {free}"
