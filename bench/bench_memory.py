"""Peak device memory of each hi3dgen stage at the official settings, predicted and measured, without a GPU.

Each stage's real-size networks are built with random N(0, 0.02) weights in the GPU's 2-byte precision and
run ONCE on the CPU under ``backend.memory_trace.LiveBytes``, which counts the bytes of the tensors alive
(weights excluded, counted exactly apart). One forward is one sampler step: every step of a flow has the
same shapes, so the peak of a step is the peak of the stage (the sampler itself keeps only x and v, a few
MB). The flows run their guided step as the GPU does (cond + uncond batched, batch 2).

Dense stages (NiRNE, DINOv2, the structure flow and decoder) run on the ``meta`` device by default: the
same aten ops return the same shapes with no arithmetic, so the live-tensor count is that of a real run
(fused kernels such as attention are one op on every device, their scratch is unseen either way;
``--dense cpu`` runs them for real to check). The sparse stages need real coordinates (their kernel maps
and windows depend on the data) and run for real on the CPU.

Precision: bf16 stands in for fp16 (the same 2 bytes a value; this CPU runs bf16 matmuls in hardware,
fp16 ones far slower): every activation and weight has the bytes it has on a CUDA card in fp16. DINOv2 runs
in float32 as the release does. Not measured: kernel scratch (cuBLAS workspaces, ~tens of MB) and the CUDA
allocator's rounding, and the CUDA context itself (~300-500 MB, outside torch's count on any card).

Official settings: NiRNE at 768, one view, structure 16^3 with 1374 condition tokens, the latent and the
decoder on a sphere shell of ~20k voxels at 64^3 (the TRELLIS paper's average structure; ``--voxels-radius``
/ ``--voxels-thickness`` pick another), the mesh decoder at 256^3 (64 x the voxels) and marching cubes on
a sphere's sdf written into its output (random weights give no surface worth extracting).

Offload peak = max over stages of (that stage's weights + its activations); resident peak = every weight +
the largest stage activation. Run: ``nice -n 10 .venv/bin/python bench/bench_memory.py`` (a few minutes on
2 cores; ``--stages`` picks some; ``--json FILE`` writes the numbers).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_flow_forward import shell_coords  # noqa: E402

from backend.jobs import JobContext  # noqa: E402
from backend.memory_trace import LiveBytes, module_tensors, weight_bytes  # noqa: E402
from backend.models.configs import VARIANTS  # noqa: E402
from backend.models.loading import build_network  # noqa: E402
from backend.nn.sparse_tensor import SparseTensor  # noqa: E402

HALF = torch.bfloat16
"The GPU's fp16 stand-in on this CPU (same bytes)."
GIB = 1024**3
COND_TOKENS = 1374
SHARED = ("normals-encode",)
"Sub-stages whose networks another sub-stage also lists (the VAE encodes and decodes): counted once."
EXPLAIN = [False]
"``--explain``: list the largest tensors alive at each stage's peak and the ops that made them."


def random_network(name: str, dtype: torch.dtype, device: str = "cpu") -> torch.nn.Module:
    """A release-size network (VARIANTS name), torso in ``dtype`` as ``load_checkpoint`` casts it; on ``meta``
    its tensors have shapes and no data."""
    model = build_network(VARIANTS[name], "meta")
    if hasattr(model, "set_compute_dtype"):
        model.set_compute_dtype(dtype)  # type: ignore[operator]
    if device == "meta":
        return model.eval().requires_grad_(False)
    model = model.to_empty(device=device).eval().requires_grad_(False)
    with torch.no_grad():
        for t in module_tensors(model):
            if t.is_floating_point():
                t.normal_(0.0, 0.02)
    return model


Measured = tuple[int, int, float, int]


def measure(nets: list[torch.nn.Module], run: Callable[[LiveBytes], object]) -> Measured:
    """(weight bytes, activation peak bytes, seconds, parameter count) of ``run`` with ``nets`` as the stage's
    networks."""
    gc.collect()
    start = time.perf_counter()
    with torch.inference_mode(), LiveBytes(explain=EXPLAIN[0]) as live:
        live.exclude(module_tensors(*nets))
        run(live)
    for size, what in live.at_peak:
        print(f"    at the peak: {size / 2**20:8.1f} MiB  {what}")
    count = sum(t.numel() for t in module_tensors(*nets) if t.is_floating_point())
    return weight_bytes(*nets), live.peak, time.perf_counter() - start, count


def stage_normals(args: argparse.Namespace) -> list[tuple[str, Measured]]:
    from bench_nirne import build_models

    from backend.nirne.pipeline import predict

    models = build_models(args.dense)
    for net in (models.unet, models.vae, models.controlnet):
        net.to(HALF)
    models.dtype = HALF
    size = args.normal_resolution
    pixels = torch.rand(1, 3, size, size, device=args.dense) * 2 - 1
    peaks: dict[str, int] = {}

    def run(live: LiveBytes) -> None:
        """predict's progress steps split it into its sub-stages: 0 encode 1 (control 2 denoise) 3 decode 4."""
        names = {1: "normals-encode", 3: "normals", 4: "normals-decode"}

        def report(stage: str, step: int, total: int, message: str) -> None:
            if step in names:
                peaks[names[step]] = live.peak
            if step != 2:
                live.reset_peak()

        predict(models, pixels, JobContext(report=report))

    nets = {"normals-encode": [models.vae], "normals": [models.controlnet, models.unet],
            "normals-decode": [models.vae]}
    _, _, seconds, _ = measure([models.unet, models.vae, models.controlnet], run)
    return [(name, (weight_bytes(*nets[name]), peaks[name], seconds, _count(nets[name]))) for name in nets]


def _count(nets: list[torch.nn.Module]) -> int:
    return sum(t.numel() for t in module_tensors(*nets) if t.is_floating_point())


def stage_condition(args: argparse.Namespace) -> Measured:
    model = random_network("dinov2_vitl14_reg", torch.float32, args.dense)  # float32, as the release
    pixels = torch.rand(1, 3, 518, 518, device=args.dense)
    return measure([model], lambda live: model(pixels))


def stage_structure(args: argparse.Namespace) -> Measured:
    flow = random_network("ss_flow_normal_dit_L_16l8_fp16", HALF, args.dense)
    decoder = random_network("ss_dec_conv3d_16l8_fp16", HALF, args.dense)
    cond = torch.randn(1, COND_TOKENS, 1024, device=args.dense)

    def run(live: LiveBytes) -> None:
        both = torch.cat([cond, torch.zeros_like(cond)])  # [2, 1374, 1024] cond + uncond, batched
        x = torch.randn(2, 8, 16, 16, 16, device=args.dense)
        v = flow(x, torch.full((2,), 1000.0, device=args.dense), both)
        del both, x
        decoder(v[:1])  # [1, 1, 64, 64, 64]

    return measure([flow, decoder], run)


def stage_latent(args: argparse.Namespace) -> Measured:
    from backend.pipelines.hi3dgen import SparseFlow

    flow = random_network("slat_flow_normal_dit_L_64l8p2_fp16", HALF)
    coords = shell_coords(args.voxels_radius, args.voxels_thickness)
    cond = torch.randn(1, COND_TOKENS, 1024)

    def run(live: LiveBytes) -> None:
        both = torch.cat([cond, torch.zeros_like(cond)])
        feats = torch.randn(2 * len(coords), 8)
        SparseFlow(flow, coords)(feats, torch.full((2,), 1000.0), both)

    return measure([flow], run)


def stage_decode(args: argparse.Namespace) -> Measured:
    from backend.mesh.marching_cubes import extract_marching_cubes
    from backend.pipelines.hi3dgen import MESH_RESOLUTION

    decoder = random_network("slat_dec_mesh_swin8_B_64l8m256c_fp16", HALF)
    coords = shell_coords(args.voxels_radius, args.voxels_thickness)

    def run(live: LiveBytes) -> None:
        slat = SparseTensor(coords, torch.randn(len(coords), 8))
        out = decoder(slat, channels=32)  # [64 N, 32] at 256^3: what marching cubes reads, as the pipeline
        cubes, feats = out.coords[:, 1:], out.feats
        del out, slat
        centre = cubes.float() + 0.5 - MESH_RESOLUTION / 2  # a sphere's sdf on the corners: a real surface
        radius = args.voxels_radius * MESH_RESOLUTION / 64
        feats[:, :8] = (centre.norm(dim=1, keepdim=True) - radius) / MESH_RESOLUTION  # every corner's sdf
        extract_marching_cubes(cubes, feats, MESH_RESOLUTION)

    return measure([decoder], run)


STAGES: dict[str, Callable[[argparse.Namespace], Measured | list[tuple[str, Measured]]]] = {
    "normals": stage_normals, "condition": stage_condition, "structure": stage_structure,
    "latent": stage_latent, "decode": stage_decode}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated, of: " + ", ".join(STAGES))
    parser.add_argument("--voxels-radius", type=float, default=27.0)
    parser.add_argument("--voxels-thickness", type=float, default=2.2)
    parser.add_argument("--normal-resolution", type=int, default=768)
    parser.add_argument("--dense", default="meta", choices=("meta", "cpu"),
                        help="where the dense stages (NiRNE, DINOv2, structure) run: meta (shapes only, no "
                             "arithmetic: the same tensors, in seconds) or cpu (real arithmetic, minutes)")
    parser.add_argument("--explain", action="store_true", help="list the largest tensors alive at each peak")
    parser.add_argument("--json", default="", help="also write the numbers to this file")
    args = parser.parse_args()
    torch.manual_seed(0)
    EXPLAIN[0] = args.explain
    voxels = len(shell_coords(args.voxels_radius, args.voxels_thickness))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {voxels} voxels at 64^3, "
          f"{64 * voxels} at 256^3; 2-byte weights as bf16 (fp16 stand-in)")
    rows: dict[str, dict[str, float]] = {}
    for name in args.stages.split(","):
        result = STAGES[name](args)
        for part, (weights, peak, seconds, count) in result if isinstance(result, list) else [(name, result)]:
            predicted = predicted_stage(part, count, voxels, args.normal_resolution)
            rows[part] = {"weights_gib": weights / GIB, "activations_gib": peak / GIB, "seconds": seconds,
                          **predicted}
            print(f"{part:14s} weights {weights / GIB:6.3f} GiB  activations {peak / GIB:6.3f} GiB  (predicted "
                  f"{predicted['predicted_weights_gib']:6.3f} + {predicted['predicted_activations_gib']:6.3f})  "
                  f"{seconds:6.1f} s", flush=True)
        gc.collect()
    summarise(rows)
    if args.json:
        Path(args.json).write_text(json.dumps({"voxels": voxels, "stages": rows}, indent=1))


def predicted_stage(name: str, count: int, voxels: int, normal_resolution: int) -> dict[str, float]:
    """The plan's own numbers for this stage (backend/memory_plan.py: parameter count x the bytes they run in,
    the activation model) for the same sizes, on a CUDA card in fp16 (guidance batched)."""
    from backend.memory_plan import activation_bytes

    weights = count * (4 if name == "condition" else 2)
    activations = activation_bytes(name, dtype_bytes=2, batch=2, voxels=voxels, normal_resolution=normal_resolution)
    return {"predicted_weights_gib": weights / GIB, "predicted_activations_gib": activations / GIB}


def summarise(rows: dict[str, dict[str, float]]) -> None:
    if not rows:
        return
    offload = max(r["weights_gib"] + r["activations_gib"] for r in rows.values())
    resident = (sum(r["weights_gib"] for n, r in rows.items() if n not in SHARED)
                + max(r["activations_gib"] for r in rows.values()))
    print(f"measured peak: offload {offload:.2f} GiB, resident {resident:.2f} GiB "
          f"(goal <= 6, stretch <= 4; plus the CUDA context)")
    if all("predicted_weights_gib" in r for r in rows.values()):
        p_off = max(r["predicted_weights_gib"] + r["predicted_activations_gib"] for r in rows.values())
        p_res = (sum(r["predicted_weights_gib"] for n, r in rows.items() if n not in SHARED)
                 + max(r["predicted_activations_gib"] for r in rows.values()))
        print(f"predicted peak: offload {p_off:.2f} GiB, resident {p_res:.2f} GiB")


if __name__ == "__main__":
    main()
