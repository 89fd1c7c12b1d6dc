"""The ``hi3dgen`` engine: image -> NiRNE normal map -> NoRLD geometry -> cleaned mesh.

Models load on the first request and stay loaded; ``release`` drops them. Which weights are present is
reported in the handshake without loading anything.
"""

from __future__ import annotations

import gc
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..errors import WeightsMissing
from ..jobs import JobContext
from ..memory import MEMORY_MODES
from ..presets import PRESET_NAMES, preset_summary
from ..settings import BackendSettings
from ..speed_options import QUANTIZE_OPTIONS, SAMPLERS
from ..stage_timer import StageTimer
from ..weights import missing_error, resolve, resolve_all, status
from .base import EngineRequest, EngineResult, MeshData, NormalMapData, ParamSpec
from .hi3dgen_memory import plan_request

if TYPE_CHECKING:
    from ..nirne.matting import MattingProvider
    from ..pipelines.hi3dgen import GeometryModels

PARAMS = (
    ParamSpec("ss_steps", "int", 50, "Structure stage: sampling steps (the official app uses 50).", 1, 200),
    ParamSpec("ss_guidance", "float", 3.0, "Structure stage: classifier-free guidance strength.", 0.0, 20.0),
    ParamSpec("ss_rescale_t", "float", 0.0, "Structure stage: how far the time grid is warped toward t = 1 "
              "(the release's rescale_t; 1 is uniform). 0 takes the release's value from pipeline.json (3).",
              0.0, 10.0),
    ParamSpec("slat_steps", "int", 6, "Latent stage: sampling steps (the official app uses 6).", 1, 200),
    ParamSpec("slat_guidance", "float", 3.0, "Latent stage: classifier-free guidance strength.", 0.0, 20.0),
    ParamSpec("preset", "enum", "official", "Speed/quality preset; it sets the steps, guidance, structure time "
              "warp, sampler, quantize and NiRNE resolution that the request leaves out (explicit values win). "
              + preset_summary(),
              options=PRESET_NAMES),
    ParamSpec("sampler", "enum", "euler", "Flow solver of both stages: euler (the release's) or heun "
              "(second order: two velocity evaluations a step, fewer steps for the same error).",
              options=SAMPLERS),
    ParamSpec("quantize", "enum", "none", "Flows' Linear layers: none (float32), int8 (dynamic int8, CPU "
              "only; refused elsewhere) or int8_on_cpu (int8 when running on the CPU, else none).",
              options=QUANTIZE_OPTIONS),
    ParamSpec("extraction", "enum", "marching_cubes",
              "Surface extraction: marching_cubes (as the release) or flexicubes (sharper, as TRELLIS).",
              options=("marching_cubes", "flexicubes")),
    ParamSpec("decimate_faces", "int", 0, "Decimate to about this many faces (0 keeps all).", 0, 20_000_000),
    ParamSpec("remove_floaters", "bool", True, "Drop small floating pieces."),
    ParamSpec("fill_holes", "bool", False, "Close small holes in the surface."),
    ParamSpec("normals", "enum", "auto", "Normal map source: auto (given, else NiRNE), nirne, or given.",
              options=("auto", "nirne", "given")),
    ParamSpec("mask", "enum", "auto", "Foreground: auto (the alpha channel, else the learned model when its "
              "weights are present, else the automatic segmentation); estimate or learned force that "
              "source and ignore the alpha.",
              options=("auto", "estimate", "learned")),
    ParamSpec("normal_resolution", "int", 768, "NiRNE processing resolution (the official app uses 768).",
              64, 2048),
    ParamSpec("multiview_mode", "enum", "stochastic",
              "Several views: stochastic (each step uses one view in turn, TRELLIS's default) or multidiffusion "
              "(every step averages all views' velocities; slower, one pass per view).",
              options=("stochastic", "multidiffusion")),
    ParamSpec("align", "bool", True, "Estimate the input view's camera from the mesh, mask and normal map "
              "(returned with the result; a few seconds)."),
    ParamSpec("refine", "bool", True, "After a confident alignment, move the vertices so the aligned view "
              "matches the normal map and the mask (reconstruction-level refinement; tens of seconds)."),
    ParamSpec("memory", "enum", "auto", "Device memory: offload (each stage's networks on the device only while "
              "it runs; the least memory), resident (every network stays on the device; faster, for big cards), "
              "or auto (the backend's --memory setting, offload unless set).",
              options=("auto", *MEMORY_MODES)),
    ParamSpec("texture", "bool", True, "UV-unwrap the mesh and bake the input image (base colour) and the "
              "normal map (tangent space) onto it from the aligned view; needs align."),
)

GEOMETRY_MODELS = ("trellis-normal", "dinov2")
NORMAL_MODEL = "yoso-normal"


class Hi3DGenEngine:
    name = "hi3dgen"
    label = "Hi3DGen (full 3D, official weights)"
    description = "NiRNE normal map -> NoRLD sparse-structure and latent flows -> mesh decoder -> surface."
    params = PARAMS

    def __init__(self, settings: BackendSettings, matting: MattingProvider | None = None) -> None:
        self.settings = settings
        self._matting = matting
        self._geometry: GeometryModels | None = None
        self._nirne: Any = None
        self._int8: tuple[GeometryModels, GeometryModels] | None = None
        "(the float32 models, their copy with int8 flows), made on the first int8 request."

    def status(self) -> dict[str, Any]:
        missing = [m for m in (*GEOMETRY_MODELS, NORMAL_MODEL) if not status(m, self.settings)[0]]
        try:
            import torch  # noqa: F401
        except ImportError:
            return {"available": False, "weights_present": False, "missing": ["torch"]}
        geometry_ready = not any(m in missing for m in GEOMETRY_MODELS)
        return {"available": geometry_ready, "weights_present": not missing, "missing": missing}

    def release(self) -> None:
        self._geometry = None
        self._nirne = None
        self._int8 = None
        if self._matting is not None:
            self._matting.release()
        gc.collect()

    def normals(self, request: EngineRequest, ctx: JobContext) -> EngineResult:
        from ..preprocess import square_crop_with_frame, uncrop_normals

        t0 = time.perf_counter()
        self._require_weights(request, geometry=False)
        request = self._for_mask(request)
        rgba, mask, frame = square_crop_with_frame(request.image, matting=self._segmenter(request))
        normals, source, _ = self._normal_map(request, rgba, mask, frame, ctx)
        normals, mask = uncrop_normals(normals, mask, frame)  # the map alone comes at the input's size
        return EngineResult(normal_map=NormalMapData(normals, mask),
                            stats={"normals": source, "mask": _mask_stats(frame), "seconds": time.perf_counter() - t0})

    def generate(self, request: EngineRequest, ctx: JobContext) -> EngineResult:
        from ..mesh.cleanup import CleanupOptions, clean_mesh
        from ..pipelines.hi3dgen import GeometryParams, generate_geometry
        from ..preprocess import condition_image, square_crop_with_frame

        t0 = time.perf_counter()
        p = request.params
        self._require_weights(request, geometry=True)
        memory_plan, memory_guard = plan_request(self, request, ctx)  # refused here when it cannot fit
        request = self._for_mask(request)
        rgba, mask, frame = square_crop_with_frame(request.image, matting=self._segmenter(request))
        lap = StageTimer()
        normals, source, colors = self._normal_map(request, rgba, mask, frame, ctx)
        lap("normal_map")
        params = GeometryParams(seed=request.seed, ss_steps=p["ss_steps"], ss_guidance=p["ss_guidance"],
                                ss_rescale_t=p["ss_rescale_t"], slat_steps=p["slat_steps"],
                                slat_guidance=p["slat_guidance"],
                                extraction=p["extraction"], multiview_mode=p["multiview_mode"],
                                sampler=p["sampler"])
        condition = condition_image(normals, mask, colors=colors)  # [518, 518, 3] uint8
        if request.views:
            from .multiview import view_conditions

            condition = [condition, *view_conditions(self, request, ctx)]  # every view checked before loading
        quantize = self._quantize_mode(request, p["quantize"])  # refused before any model loads
        models = self._models(request, ctx)
        if memory_plan is None:  # the weights were downloaded just now
            memory_plan, memory_guard = plan_request(self, request, ctx)
        if getattr(models, "memory", None) is not None:
            models.memory.guard = memory_guard  # checks again with the structure's real voxel count
        if quantize == "int8":
            models = self._int8_models(models, ctx)  # shares models.memory (a CPU placement: nothing moves)
        lap("load")
        vertices, faces, timings = generate_geometry(models, condition, params, ctx)
        lap.restart()  # generate_geometry keeps its own stage seconds
        ctx.step("cleanup", 0, 1, "cleaning the mesh")
        options = CleanupOptions(remove_floaters=p["remove_floaters"], fill_holes=p["fill_holes"],
                                 target_faces=p["decimate_faces"])
        vertices, faces, vertex_normals = clean_mesh(vertices, faces, options)
        mesh = MeshData(request.name, vertices, faces, normals=vertex_normals)
        lap("cleanup")
        stats = {"normals": source, "mask": _mask_stats(frame), **timings, "faces": int(len(faces)),
                 "memory": memory_plan.as_stats() if memory_plan is not None else {}}
        if request.views:
            from .multiview import view_stats

            stats["views"] = view_stats(request)
        if p["align"] or p["texture"]:
            from ..preprocess import uncrop_normals

            view = uncrop_normals(normals, mask, frame)  # (normals, mask) of the input image: the camera's frame
        if p["align"]:
            device = self._raster_device(request)
            stats["camera"] = self._align(vertices, faces, view, device, ctx)
            lap("align")
            if p["refine"]:
                mesh, stats["refine"] = self._refine(mesh, stats["camera"], view, device, ctx)
                lap("refine")
        if p["texture"]:  # after refine: the bake uses the final vertices
            from ..bake.result import texture_mesh

            mesh, stats["texture"] = texture_mesh(mesh, request.image.rgba, *view, stats.get("camera"), ctx)
            lap("texture")
        stats.update(lap.timings)
        stats["seconds"] = time.perf_counter() - t0
        return EngineResult(meshes=[mesh], normal_map=NormalMapData(normals, mask), stats=stats)

    def _quantize_mode(self, request: EngineRequest, choice: str) -> str:
        """``quantize`` resolved for this request's placement ("none" or "int8"); ``BadInput`` for int8 off the
        CPU."""
        from ..devices import choose_placement
        from ..speed_options import resolve_quantize

        placement = choose_placement(request.placement_name, self.settings.precision)
        return resolve_quantize(choice, placement.device, placement.dtype)

    def _int8_models(self, models: GeometryModels, ctx: JobContext) -> GeometryModels:
        """``models`` with int8 copies of the two flows (made once, kept beside the float32 ones)."""
        if self._int8 is None or self._int8[0] is not models:
            from ..quant import quantize_int8

            ctx.step("loading", 0, 1, "quantising the flows to int8")
            self._int8 = (models, replace(models, ss_flow=quantize_int8(models.ss_flow),
                                          slat_flow=quantize_int8(models.slat_flow)))
        return self._int8[1]

    def _raster_device(self, request: EngineRequest) -> Any:
        """The request's device for the rasterizer, or the CPU (its int64 scatter-min is checked on CPU and CUDA
        only)."""
        import torch

        from ..devices import choose_placement

        device = choose_placement(request.placement_name, self.settings.precision).device
        return device if device.type == "cuda" else torch.device("cpu")

    def _align(self, vertices: Any, faces: Any, view: tuple[Any, Any], device: Any,
               ctx: JobContext) -> dict[str, Any]:
        """The input view's camera (``Camera.to_dict``, for the input image's size) with its alignment scores;
        ``view`` is the (normals, mask) pair at the input image's size."""
        from ..align.align import align_view

        normals, mask = view
        return align_view(vertices, faces, mask, normals, device=device, ctx=ctx).to_dict()

    def _refine(self, mesh: MeshData, camera: dict[str, Any], view: tuple[Any, Any], device: Any,
                ctx: JobContext) -> tuple[MeshData, dict[str, Any]]:
        """The mesh refined against the aligned view when the alignment is confident, and what was done."""
        from ..camera import Camera
        from ..mesh.cleanup import vertex_normals
        from ..refine.refine import Confidence, refine_mesh

        confident, reason = Confidence().check(camera.get("alignment", {}))
        if not confident:
            return mesh, {"applied": False, "confident": False, "reason": reason}
        normals, mask = view
        result = refine_mesh(mesh.vertices, mesh.faces, Camera.from_dict(camera), mask, normals,
                             device=device, ctx=ctx)
        if result.applied:
            mesh = replace(mesh, vertices=result.vertices, normals=vertex_normals(result.vertices, mesh.faces))
        return mesh, {"confident": True, **result.stats}

    def _require_weights(self, request: EngineRequest, geometry: bool) -> None:
        """Raise one ``WeightsMissing`` naming every absent model this request needs (none when downloading)."""
        if self.settings.allow_download:
            return
        given = request.normal_map is not None and request.params["normals"] in ("auto", "given")
        needed = [*(GEOMETRY_MODELS if geometry and self._geometry is None else ()),
                  *((NORMAL_MODEL,) if self._nirne is None and not given else ())]
        absent = [m for m in needed if not status(m, self.settings)[0]]
        if absent:
            raise missing_error(absent, self.settings)

    def _for_mask(self, request: EngineRequest) -> EngineRequest:
        from ..nirne.matting import image_for_mask

        return replace(request, image=image_for_mask(request.image, request.params["mask"]))

    def _segmenter(self, request: EngineRequest) -> Any:
        from ..nirne.matting import choose_matting

        return choose_matting(self._matting, request.params["mask"], request.placement_name,
                              request.image.has_alpha)

    def _models(self, request: EngineRequest, ctx: JobContext) -> GeometryModels:
        if self._geometry is None:
            from ..devices import choose_placement
            from ..pipelines.hi3dgen import GeometryModels

            ctx.step("loading", 0, 1, "loading the geometry networks")
            folders = resolve_all(GEOMETRY_MODELS, self.settings, ctx)  # one download of the absent ones
            placement = choose_placement(request.placement_name, self.settings.precision)
            self._geometry = GeometryModels.load(folders["trellis-normal"], folders["dinov2"], placement,
                                                 memory=self._memory_mode(request))
        elif self._geometry.memory is not None and self._geometry.memory.mode != self._memory_mode(request):
            from ..pipelines.hi3dgen import networks

            self._geometry.memory.switch(self._memory_mode(request), *networks(self._geometry))
        return self._geometry

    def _memory_mode(self, request: EngineRequest | None) -> str:
        """The request's ``memory`` parameter, ``auto`` (or no request) being the backend's setting."""
        mode = request.params.get("memory", "auto") if request is not None else "auto"
        return self.settings.memory if mode == "auto" else str(mode)

    def nirne_if_present(self, placement_name: str) -> Any:
        """The NiRNE estimator (loaded once) when its weights are present, else None; for the relief engine."""
        if self._nirne is None and not status(NORMAL_MODEL, self.settings)[0]:
            return None
        return self._estimator(placement_name, JobContext())

    def _estimator(self, placement_name: str, ctx: JobContext, request: EngineRequest | None = None) -> Any:
        mode = self._memory_mode(request)
        if self._nirne is not None and getattr(self._nirne, "memory", None) and self._nirne.memory.mode != mode:
            self._nirne.memory.switch(mode, *self._nirne.networks())
        if self._nirne is None:
            from ..devices import choose_placement
            from ..nirne.pipeline import NirneEstimator

            ctx.step("loading", 0, 1, "loading NiRNE")
            folder = resolve(NORMAL_MODEL, self.settings, ctx)
            self._nirne = NirneEstimator.load(folder, choose_placement(placement_name, self.settings.precision),
                                              memory=mode)
        return self._nirne

    def _normal_map(self, request: EngineRequest, rgba: Any, mask: Any, frame: Any,
                    ctx: JobContext) -> tuple[Any, str, Any]:
        """(unit normals [R, R, 3] in the crop, their source, a given map's own uint8 colours or None)."""
        choice = request.params["normals"]
        if request.normal_map is not None and choice in ("auto", "given"):
            from ..normalmap import from_colors
            from ..preprocess import given_colors

            colors = given_colors(request.normal_map, frame, mask.shape)  # [R, R, 3] uint8
            return from_colors(colors / 255.0), "given", colors
        if choice == "given":
            raise WeightsMissing("Normals 'given' was chosen but no normal map was supplied.",
                                 hint="Supply a normal-map image, or choose 'auto'.", code="bad_input")
        estimator = replace(self._estimator(request.placement_name, ctx, request),
                            processing_resolution=request.params["normal_resolution"])
        return estimator(rgba, mask, ctx), "nirne", None


def _mask_stats(frame: Any) -> dict[str, object]:
    """The crop frame's mask report as ``stats["mask"]`` ({} when the frame has none)."""
    return frame.mask.as_stats() if frame.mask is not None else {}
