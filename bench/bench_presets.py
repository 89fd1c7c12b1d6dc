"""Whole-engine wall time per hi3dgen preset on this CPU, and each preset's deviation from official.

Time: every network at its real size with random weights, float32 (and int8 where a preset quantises), one
forward each: DINOv2 on 518 px, the ss-flow at 4,096 tokens, the structure decoder, the slat-flow and the mesh
decoder on a 20k-voxel shell (the TRELLIS paper's average structure); each flow forward twice, with a condition
and with guidance's zero condition (whose cross-attention takes the constant-context shortcut). A preset's time
is the flows' per-forward seconds times its forward counts (``Preset.forwards``: conditioned ones one a step, a
Heun step two, the rest zero-condition ones) plus the other stages once; NiRNE, align, refine and
the bake are taken from their own benches (``OTHER_STAGES``, ``NIRNE_SECONDS``; not re-measured here).
``--times FILE`` keeps the measured seconds (a second run with the same file only prints). ``--full`` really
runs the engine end to end per preset, on real-size random weights written to a temporary folder (hours on a
2-core CPU): from a given normal map, or with ``--photo`` from the bundled example image with NiRNE (real-size
random weights too) at the preset's resolution; ``--full-only`` skips the estimates.

Deviation: relative L2 distance of the structure stage's final latent (the ss-flow's output) to official's,
same noise and condition, on the small random ss-flow of ``bench_flow_solvers.py`` (``SIZES``;
``--deviation-size mid`` for the larger one; the real one at 50 steps is an hour a run here). int8 presets
quantise that flow the same way. The int8 velocity deviation at real size (one forward) is printed with the
times.

Run: ``nice -n 10 .venv/bin/python bench/bench_presets.py --times /tmp/preset_times.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_flow_forward import shell_coords  # noqa: E402
from bench_flow_solvers import build_flow, rel  # noqa: E402

from backend.models.configs import VARIANTS  # noqa: E402
from backend.models.loading import build_network  # noqa: E402
from backend.presets import PRESETS  # noqa: E402

OTHER_STAGES = {"align": 8.0, "refine": 32.0, "texture": 19.3}
"""Seconds from the README's benchmarks on this machine: bench_align (up to 8.0 s), bench_refine (28 to 36 s),
bench_bake (81,920 faces); the same for every preset."""
NIRNE_SECONDS = {768: 88.0, 512: 44.2}
"NiRNE's seconds per ``normal_resolution`` a preset uses (bench_nirne.py --resolution R on this machine)."


SECONDS = ("dinov2", "_fp32", "_int8", "_quantize", "decoder")
"Keys of the measured times that are seconds (the rest: voxel count, deviations)."


def timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _flow_pair(name: str, model: torch.nn.Module, call: Any, times: dict[str, float], cond: torch.Tensor) -> None:
    """Time one fp32 and one int8 forward of ``model`` through ``call(model, cond)``, and each again with
    guidance's zero condition (``_uncond``: its cross-attention takes the constant-context shortcut); the int8
    velocity deviation."""
    from backend.quant import quantize_int8

    zero = torch.zeros_like(cond)
    times[f"{name}_fp32"], reference = timed(lambda: call(model, cond))
    times[f"{name}_fp32_uncond"], _ = timed(lambda: call(model, zero))
    times[f"{name}_quantize"], quantized = timed(lambda: quantize_int8(model))
    times[f"{name}_int8"], out = timed(lambda: call(quantized, cond))
    times[f"{name}_int8_uncond"], _ = timed(lambda: call(quantized, zero))
    times[f"{name}_int8_velocity_rel_l2"] = rel(out, reference)
    print(f"  {name}: fp32 {times[f'{name}_fp32']:.1f} s (zero condition {times[f'{name}_fp32_uncond']:.1f} s), "
          f"int8 {times[f'{name}_int8']:.1f} s (zero condition {times[f'{name}_int8_uncond']:.1f} s; quantising "
          f"{times[f'{name}_quantize']:.1f} s), velocity rel L2 {rel(out, reference):.4f}", flush=True)


def one_pass(variant: str, call: Any) -> float:
    """Seconds of ``call(model)`` for a freshly built random ``variant``, freed afterwards."""
    model = build_network(VARIANTS[variant], "cpu").eval()
    start = time.perf_counter()
    call(model)
    seconds = time.perf_counter() - start
    del model
    gc.collect()
    return seconds


def flow_pair(name: str, variant: str, call: Any, times: dict[str, float], cond: torch.Tensor) -> None:
    model = build_network(VARIANTS[variant], "cpu").eval()
    _flow_pair(name, model, call, times, cond)
    del model
    gc.collect()


def measure_stages() -> dict[str, float]:
    """Seconds of one pass of every network at real size (random weights), one network in memory at a time."""
    from backend.nn.sparse_tensor import SparseTensor
    from backend.pipelines.hi3dgen import SparseFlow

    times: dict[str, float] = {}
    torch.manual_seed(0)
    cond, t = torch.randn(1, 1374, 1024), torch.tensor([900.0])
    x = torch.randn(1, 8, 16, 16, 16)
    coords = shell_coords(27.0, 2.2)  # ~20k voxels
    feats = torch.randn(len(coords), 8)
    times["voxels"] = float(len(coords))
    with torch.inference_mode():
        times["dinov2"] = one_pass("dinov2_vitl14_reg", lambda m: m(torch.randn(1, 3, 518, 518)))
        print(f"  dinov2: {times['dinov2']:.1f} s", flush=True)
        flow_pair("ss_flow", "ss_flow_normal_dit_L_16l8_fp16", lambda m, c: m(x, t, c), times, cond)
        times["ss_decoder"] = one_pass("ss_dec_conv3d_16l8_fp16", lambda m: m(x))
        print(f"  ss_decoder: {times['ss_decoder']:.1f} s", flush=True)
        flow_pair("slat_flow", "slat_flow_normal_dit_L_64l8p2_fp16",
                  lambda m, c: SparseFlow(m, coords)(feats, t, c), times, cond)
        times["mesh_decoder"] = one_pass("slat_dec_mesh_swin8_B_64l8m256c_fp16",
                                         lambda m: m(SparseTensor(coords, feats)))
        print(f"  mesh_decoder: {times['mesh_decoder']:.1f} s", flush=True)
    return times


def flow_seconds(times: dict[str, float], name: str, kind: str, forwards: int, evaluations: int) -> float:
    """``forwards`` of flow ``name``: ``evaluations`` conditioned ones, the rest with the zero condition
    (timed separately when the times have them: the constant-context shortcut makes them cheaper)."""
    unconditional = times.get(f"{name}_{kind}_uncond", times[f"{name}_{kind}"])
    return evaluations * times[f"{name}_{kind}"] + (forwards - evaluations) * unconditional


def preset_seconds(times: dict[str, float]) -> dict[str, dict[str, float]]:
    """Per preset: the flows' seconds, the other stages' seconds and the total."""
    fixed = times["dinov2"] + times["ss_decoder"] + times["mesh_decoder"] + sum(OTHER_STAGES.values())
    rows = {}
    for preset in PRESETS.values():
        v = preset.values
        ss, slat = preset.forwards()
        per_step = 2 if v["sampler"] == "heun" else 1  # conditioned evaluations a step
        kind = "int8" if v["quantize"] in ("int8", "int8_on_cpu") else "fp32"
        flows = (flow_seconds(times, "ss_flow", kind, ss, per_step * v["ss_steps"])
                 + flow_seconds(times, "slat_flow", kind, slat, per_step * v["slat_steps"]))
        quantize = times["ss_flow_quantize"] + times["slat_flow_quantize"] if kind == "int8" else 0.0
        other = fixed + NIRNE_SECONDS[v["normal_resolution"]]
        rows[preset.name] = {"ss_forwards": ss, "slat_forwards": slat, "flows": flows, "quantize": quantize,
                             "other": other, "total": flows + quantize + other}
    return rows


def deviations(size: str) -> dict[str, float]:
    """Relative L2 of each preset's structure-stage latent to official's (a random ss-flow of ``size``)."""
    from backend.quant import quantize_int8
    from backend.sampling import sample_flow_euler
    from backend.sampling_heun import sample_flow_heun

    model, noise, cond = build_flow(size)
    neg = torch.zeros_like(cond)  # made outside inference mode: the K/V cache reads its version counter
    quantized = None
    out: dict[str, torch.Tensor] = {}
    for preset in PRESETS.values():
        v = preset.values
        net = model
        if v["quantize"] in ("int8", "int8_on_cpu"):
            if quantized is None:
                quantized = quantize_int8(model)
                quantized.set_context_cache(2)
            net = quantized
        fn = sample_flow_heun if v["sampler"] == "heun" else sample_flow_euler
        with torch.inference_mode():
            out[preset.name] = fn(net, noise, cond, neg, steps=v["ss_steps"], cfg_strength=v["ss_guidance"],
                                  cfg_interval=(0.5, 1.0), rescale_t=v["ss_rescale_t"] or 3.0, batch_cfg=False)
        print(f"  {preset.name}: structure latent done", flush=True)
    return {name: rel(x, out["official"]) for name, x in out.items()}


def record_structure(latents: dict[str, torch.Tensor], key: list[str]) -> Any:
    """Wrap ``sampling_heun.views_sampler`` so each structure-stage latent lands in ``latents[key[0]]``."""
    import backend.sampling_heun as sampling_heun

    original = sampling_heun.views_sampler

    def views_sampler(sampler: str) -> Any:
        fn = original(sampler)

        def sample(*args: Any, **kwargs: Any) -> torch.Tensor:
            out = fn(*args, **kwargs)
            if out.shape[-3:] == (16, 16, 16):  # the structure stage; the latent stage is sparse
                latents[key[0]] = out.detach().float().cpu().clone()
            return out
        return sample

    sampling_heun.views_sampler = views_sampler
    return original


def _shell_structure(decode: Any) -> Any:
    """The structure decoder's forward replaced by an object-like occupancy: the sphere shell of
    ``measure_stages`` (about 20k voxels), occupied (+1) in every preset's run.

    A random flow and decoder give scattered voxels: thresholded anywhere, random logits occupy cells all
    over the grid, so the latent stage's 2^3 patches hold about 16k tokens at 21k voxels instead of the few
    thousand of an object's surface, and its attention (quadratic in the tokens) costs about 10x; the mesh
    decoder then meshes noise into millions of faces. A trained model's structure is a surface band. The
    structure latent is still the preset's own (recorded before the decoder, for the deviation)."""

    def forward(self: Any, x: torch.Tensor) -> torch.Tensor:
        decode(self, x)  # its cost stays in the run
        shell = shell_coords(27.0, 2.2)
        logits = torch.full((x.shape[0], 1, 64, 64, 64), -1.0, dtype=x.dtype, device=x.device)
        logits[:, 0, shell[:, 1].long(), shell[:, 2].long(), shell[:, 3].long()] = 1.0
        return logits

    return forward


def _stage_printer() -> Any:
    """A progress callback printing each new stage with the seconds since the run began."""
    start, last = time.perf_counter(), [""]

    def report(stage: str, step: int, total: int, message: str) -> None:
        if stage != last[0]:
            last[0] = stage
            print(f"    {time.perf_counter() - start:7.1f} s  {stage}: {message}", flush=True)

    return report


def write_nirne_folder(folder: Path) -> Path:
    """A yoso-normal folder at the release's size (its configs from tests/fixtures/yoso_configs), random
    N(0, 0.02) weights saved as the release's fp16 files (about 2.6 GB)."""
    from safetensors.torch import save_file

    from backend.nirne.loading import COMPONENTS, build_component

    configs = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "yoso_configs"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_index.json").write_text((configs / "model_index.json").read_text())
    generator = torch.Generator().manual_seed(0)
    for name in COMPONENTS:
        config = json.loads((configs / name / "config.json").read_text())
        (folder / name).mkdir(exist_ok=True)
        (folder / name / "config.json").write_text(json.dumps(config))
        model = build_component(name, config, device="meta")
        state = {key: (torch.randn(t.shape, generator=generator) * 0.02).to(torch.float16)
                 for key, t in model.state_dict().items()}
        save_file(state, str(folder / name / "diffusion_pytorch_model.fp16.safetensors"))
        del state
    return folder


def run_full(presets: list[str], out_json: str = "", photo: bool = False) -> None:
    """The engine end to end per preset on real-size random weights: from a given normal map (NiRNE skipped),
    or with ``photo`` from the bundled example image (examples/suzanne.png, its alpha the mask), NiRNE at the
    preset's ``normal_resolution`` included.

    Also the real-size deviation: each preset's structure latent (same seed, same condition) against
    official's, as relative L2, and the IoU of the decoded 64^3 occupancy."""
    import tempfile

    import numpy as np

    import backend.sampling_heun as sampling_heun
    from backend.engines.base import EngineRequest, validate_params
    from backend.engines.hi3dgen import PARAMS, Hi3DGenEngine
    from backend.images import LoadedImage
    from backend.jobs import JobContext
    from backend.models.testing import write_dinov2_folder, write_release_folder
    from backend.settings import BackendSettings

    real = {"sparse_structure_flow_model": "ss_flow_normal_dit_L_16l8_fp16",
            "sparse_structure_decoder": "ss_dec_conv3d_16l8_fp16",
            "slat_flow_model": "slat_flow_normal_dit_L_64l8p2_fp16",
            "slat_decoder_mesh": "slat_dec_mesh_swin8_B_64l8m256c_fp16"}
    from backend.models.ss_decoder import SparseStructureDecoder

    latents: dict[str, torch.Tensor] = {}
    key = [""]
    original = record_structure(latents, key)
    decode = SparseStructureDecoder.forward
    SparseStructureDecoder.forward = _shell_structure(decode)  # type: ignore[method-assign]
    report: dict[str, Any] = {"threads": torch.get_num_threads(), "runs": {}}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            write_release_folder(root / "trellis-normal", real, occupancy=0.08)  # ~20k of the 64^3 voxels
            write_dinov2_folder(root / "dinov2", "dinov2_vitl14_reg")
            if photo:
                write_nirne_folder(root / "yoso-normal")
            engine = Hi3DGenEngine(BackendSettings(weights_dir=str(root), precision="fp32"))
            yy, xx = np.mgrid[0:256, 0:256]
            disc = (np.hypot(yy - 128.0, xx - 128.0) < 90).astype(np.float32)
            image = LoadedImage(np.dstack([np.full((256, 256, 3), 0.5), disc]).astype(np.float32), True,
                                "RGBA")
            normals = LoadedImage(np.dstack([np.full((256, 256, 2), 0.5), np.ones((256, 256)), disc]).astype(
                np.float32), True, "RGBA")
            if photo:
                from backend.images import load_image

                image = load_image(str(Path(__file__).resolve().parents[1] / "examples" / "suzanne.png"))
            source = "from a photo (NiRNE included)" if photo else "NiRNE skipped: a given normal map"
            for name in presets:
                key[0] = name
                request = EngineRequest(image, "disc", 0, validate_params(PARAMS, {"preset": name}), "cpu",
                                        normal_map=None if photo else normals)
                load = _load_average()
                ctx = JobContext(report=_stage_printer())
                seconds, result = timed(lambda request=request, ctx=ctx: engine.generate(request, ctx))
                stages = {k[:-8]: round(float(v), 1) for k, v in result.stats.items() if k.endswith("_seconds")}
                run = {"seconds": seconds, "faces": len(result.meshes[0].faces), "stages": stages,
                       "load_before": load, "load_after": _load_average()}
                report["runs"][name] = run
                run["source"] = source
                print(f"--full {name}: {seconds:.0f} s end to end ({source}), "
                      f"{run['faces']} faces, load average {load:.1f} -> {run['load_after']:.1f}; stages (s): "
                      f"{json.dumps(stages)}", flush=True)
                _write_report(report, latents, out_json)
    finally:
        sampling_heun.views_sampler = original
        SparseStructureDecoder.forward = decode  # type: ignore[method-assign]
    _write_report(report, latents, out_json, final=True)


def _latent_path(out_json: str, name: str) -> Path:
    path = Path(out_json)
    return path.with_name(f"{path.stem}.{name}.pt")


def _load_average() -> float:
    import os

    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def _write_report(report: dict[str, Any], latents: dict[str, torch.Tensor], out_json: str,
                  final: bool = False) -> None:
    """Deviations of every recorded structure latent from official's; the report as JSON to ``out_json``.

    Each latent is also saved beside ``out_json`` (``<stem>.<preset>.pt``), and latents saved by an earlier
    run (same random weights, seed and condition) are read back, so presets may run in separate processes."""
    if out_json:
        for name, latent in latents.items():
            torch.save(latent, _latent_path(out_json, name))
        for name in PRESETS:
            if name not in latents and _latent_path(out_json, name).exists():
                latents[name] = torch.load(_latent_path(out_json, name))
        old = Path(out_json)
        if old.exists():
            for name, run in json.loads(old.read_text()).get("runs", {}).items():
                report["runs"].setdefault(name, run)
    if "official" in latents:
        ref = latents["official"]
        for name, latent in latents.items():
            run = report["runs"].setdefault(name, {})
            run["latent_rel_l2"] = rel(latent, ref)
            if final:
                print(f"--full {name}: structure latent {run['latent_rel_l2']:.4f} from official's (real size)",
                      flush=True)
    if out_json:
        Path(out_json).write_text(json.dumps(report, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--times", default="", help="JSON file keeping the measured stage seconds")
    parser.add_argument("--deviation-size", choices=("small", "mid", "tiny", "none"), default="small")
    parser.add_argument("--full", action="store_true", help="also run the engine end to end per preset")
    parser.add_argument("--full-presets", default="draft,official,standard",
                        help="comma-separated presets for --full, in this order")
    parser.add_argument("--photo", action="store_true",
                        help="--full from the bundled example image, NiRNE included (real-size random weights)")
    parser.add_argument("--full-only", action="store_true", help="only --full: no estimates, no deviations")
    parser.add_argument("--full-json", default="", help="write the --full report (seconds, deviations) here")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--scale-ss-forward", type=float, default=0.0, metavar="S",
                        help="scale every measured time so the ss-flow fp32 forward takes S seconds (a loaded "
                             "machine's run brought to the README's unloaded 37.7 s)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU", flush=True)
    if args.full_only:
        args.full = True
    else:
        estimates(args)
    if args.full:
        chosen = [name for name in args.full_presets.split(",") if name]
        unknown = sorted(set(chosen) - set(PRESETS))
        if unknown:
            parser.error(f"unknown presets for --full: {', '.join(unknown)}")
        run_full(chosen, args.full_json, args.photo)


def estimates(args: argparse.Namespace) -> None:
    """The per-forward estimates of every preset and the deviations on the small random flow (printed)."""
    path = Path(args.times) if args.times else None
    if path is not None and path.exists():
        times = json.loads(path.read_text())
    else:
        print("measuring one pass of every network at real size (random weights):", flush=True)
        times = measure_stages()
        if path is not None:
            path.write_text(json.dumps(times, indent=1))
    if args.scale_ss_forward:  # the machine's load in this run, taken out by one reference figure
        factor = args.scale_ss_forward / times["ss_flow_fp32"]
        times = {k: v * factor if k.endswith(SECONDS) else v for k, v in times.items()}
        print(f"every measured second scaled by {factor:.3f} (the ss-flow fp32 forward set to "
              f"{args.scale_ss_forward} s)")
    rows = preset_seconds(times)
    dev = deviations(args.deviation_size) if args.deviation_size != "none" else {}
    print(f"other stages: DINOv2 {times['dinov2']:.1f} s, structure decoder {times['ss_decoder']:.1f} s, mesh "
          f"decoder {times['mesh_decoder']:.1f} s ({times['voxels']:.0f} voxels), from other benches "
          + ", ".join(f"{k} {v:.0f} s" for k, v in OTHER_STAGES.items())
          + ", NiRNE " + " / ".join(f"{v:.0f} s at {k} px" for k, v in NIRNE_SECONDS.items()))
    official = rows["official"]["total"]
    print(f"{'preset':9s} {'forwards':>9s} {'flows s':>8s} {'total s':>8s} {'min':>6s} {'x official':>10s} "
          f"{'latent dev':>10s}")
    for name, row in rows.items():
        forwards = f"{row['ss_forwards']:.0f}+{row['slat_forwards']:.0f}"
        deviation = f"{dev[name]:.4f}" if name in dev else "-"
        print(f"{name:9s} {forwards:>9s} {row['flows'] + row['quantize']:8.0f} {row['total']:8.0f} "
              f"{row['total'] / 60:6.1f} {row['total'] / official:10.3f} {deviation:>10s}")


if __name__ == "__main__":
    main()
