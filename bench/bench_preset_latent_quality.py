"""Each hi3dgen preset's *latent* stage on a trained tiny structured-latent flow, against official's.

``bench_preset_quality.py`` does this for the structure stage; this is the same for the second flow, whose
steps decide the surface detail on the occupied voxels. A tiny slat-flow (``bench_slat_flow_training.py
heldout``'s configuration) is trained with our trainer on toy assets (``training/slat_synthetic.py``) with
condition dropout on (``p_uncond`` 0.1: guidance needs the unconditional branch). The mesh decoder is the one
fitted to the training assets (``training_runs.fitted_release``). Then, for each held-out asset (its voxels
and its condition) and noise seed, the latent is sampled exactly as the engine samples it for each preset
(``backend.presets.PRESETS``: sampler, ``slat_steps``, ``slat_guidance``; the release's slat-sampler interval
(0.5, 1.0) and ``rescale_t`` 3, read from the tiny release's pipeline.json; zero negative condition; cond and
uncond as two passes, as on a CPU; the flow quantised by ``backend.quant.quantize_int8`` where the preset
quantises), same noise and condition for all rows, decoded by the fitted decoder and meshed by the engine's
marching cubes at 256^3.

Per row, over the held-out samples: relative L2 of the latent to official's, and the decoded mesh against the
asset's exact surface (``training.slat_geometry.latent_geometry_scores``: Chamfer distance, F-score at one mesh
cube 1/256, normal consistency) and against official's own mesh (Chamfer to official). Rows: every preset,
each int8 preset also in float32 (the sampler's share), ``--extra`` candidates ("euler:2" = float32 at
guidance 3, "euler:2:int8", "euler:3:g1:int8" = guidance 1, "euler:2:g0" = unguided), and the yardstick
``official/seed'`` (official against itself with the next noise seed). References: the starting noise decoded
(the floor) and the assets' own latents (the ceiling).

Run (a few minutes on the shared 2-core machine):
``nice -n 10 .venv/bin/python bench/bench_preset_latent_quality.py --extra euler:2:int8,euler:3:g1:int8``
(``--work DIR`` keeps the data and the trained flow, so a second run only samples).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_flow_solvers import rel
from bench_preset_quality import row_params
from bench_preset_quality import settings as stage_settings
from torch import nn
from training_runs import every, fitted_release, mean, report_losses, setup_threads

from backend.atomic import write_atomic
from backend.models.loading import load_checkpoint, read_pipeline_json
from backend.pipelines.hi3dgen import SparseFlow
from backend.quant import quantize_int8
from backend.sampling import SamplerParams, sample_flow_euler
from backend.sampling_heun import sample_flow_heun, sampler_forward_passes
from tests.training.conftest import CPU
from tests.training.test_slat_flow import slat_config
from training.evaluate import mean_scores
from training.slat_data import SLatAssetFolder
from training.slat_geometry import decoded_mesh, latent_geometry_scores, own_latents
from training.slat_synthetic import make_slat_dataset
from training.slat_trainer import build_mesh_decoder, train_slat_flow

OTHER_SEED = "official/seed'"


def settings(extra: tuple[str, ...] = ()) -> dict[str, dict]:
    """Row name -> (sampler, steps, guidance, int8) of each preset's latent stage, each int8 preset in float32
    too, and the candidates ``extra`` (``bench_preset_quality.settings``' syntax, e.g. "euler:3:g1:int8")."""
    return stage_settings(extra, stage="slat")


def sample(flow: nn.Module, coords: torch.Tensor, noise: torch.Tensor, cond: torch.Tensor, row: dict,
           sampler: SamplerParams) -> torch.Tensor:
    """The normalised latent [N, 8] as the engine samples it on a CPU with ``row``'s settings."""
    fn = sample_flow_heun if row["sampler"] == "heun" else sample_flow_euler
    params = row_params(row, sampler.cfg_interval, sampler.rescale_t)
    with torch.inference_mode():
        return fn(SparseFlow(flow, coords), noise, cond, torch.zeros_like(cond), steps=params.steps,
                  cfg_strength=params.cfg_strength, cfg_interval=params.cfg_interval, rescale_t=params.rescale_t,
                  batch_cfg=False)


def mesh_chamfer(a: tuple | None, b: tuple | None, points: int = 2048) -> float:
    """Symmetric Chamfer distance (mean of both directions) between two meshes' surface samples."""
    from scipy.spatial import cKDTree

    from training.metrics import sample_mesh

    if a is None or b is None:
        return float("nan")
    pa, _ = sample_mesh(a[0], a[1], points, seed=0)
    pb, _ = sample_mesh(b[0], b[1], points, seed=0)
    return float((cKDTree(pb).query(pa)[0].mean() + cKDTree(pa).query(pb)[0].mean()) / 2)


def trained_flow(work: Path, args: argparse.Namespace, release: Path) -> nn.Module:
    """The slat-flow fine-tuned from the tiny release on ``work / "train"`` (reused with the same ``--work``)."""
    config = slat_config(model={"init": str(release)}, steps=args.steps, batch_size=args.batch, lr=args.lr,
                         lr_schedule="cosine", warmup_steps=10, seed=args.train_seed, ema_rate=0.99, export="model",
                         p_uncond=args.p_uncond)
    export = work / "run" / "export" / "ckpts" / config.train.export_name
    if export.with_suffix(".json").exists():
        print(f"reusing the trained flow {export}")
        return load_checkpoint(export)
    start = time.perf_counter()
    result = train_slat_flow(config, work / "train", work / "run", CPU, progress=every(100))
    report_losses(f"training: {args.assets} assets, {args.steps} steps of {args.batch}, p_uncond {args.p_uncond}",
                  result.losses, time.perf_counter() - start)
    return load_checkpoint(result.export)


def run_rows(flow: nn.Module, decoder: nn.Module, norm, held: Path, seeds: int, sampler: SamplerParams,
             extra: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Every row's latents for each held-out asset x ``seeds``; per row the mean deviations and geometry."""
    flow = flow.eval()
    quantized = quantize_int8(flow)
    assets = SLatAssetFolder(held, need_surface=False)
    rows = settings(extra)
    latents: dict[str, list[list[torch.Tensor]]] = {name: [] for name in rows}  # [seed][asset]
    start = time.perf_counter()
    for seed in range(seeds):
        for name in rows:
            latents[name].append([])
        for i in range(len(assets)):
            asset = assets[i]
            coords = torch.cat([torch.zeros(len(asset.coords), 1, dtype=torch.int32), asset.coords], 1)
            noise = torch.randn(len(coords), 8, generator=torch.Generator().manual_seed(1000 * seed + i))
            for name, row in rows.items():
                latents[name][seed].append(sample(quantized if row["int8"] else flow, coords, noise,
                                                  asset.cond[None], row, sampler))
    print(f"{len(assets)} held-out assets x {seeds} seeds x {len(rows)} rows sampled in "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    with torch.no_grad():
        meshes = {name: [[decoded_mesh(decoder, norm, assets[i].coords, x) for i, x in enumerate(per_seed)]
                         for per_seed in per_row] for name, per_row in latents.items()}
    ref = latents["official"]
    out = {}
    for name in rows:
        devs = [rel(x, r) for xs, rs in zip(latents[name], ref) for x, r in zip(xs, rs)]
        to_official = [mesh_chamfer(m, r) for ms, rs in zip(meshes[name], meshes["official"]) for m, r in zip(ms, rs)]
        scores = [s for per_seed in latents[name] for s in latent_geometry_scores(per_seed, decoder, norm, held)]
        out[name] = {"latent_rel_l2": mean(devs), "latent_rel_l2_max": max(devs),
                     "chamfer_to_official": float(np.nanmean(to_official)), **mean_scores(scores)}
    if seeds > 1:
        pairs = [(k, (k + 1) % seeds) for k in range(seeds)]
        devs = [rel(a, b) for k, j in pairs for a, b in zip(ref[k], ref[j])]
        to_official = [mesh_chamfer(a, b) for k, j in pairs for a, b in zip(meshes["official"][k],
                                                                              meshes["official"][j])]
        out[OTHER_SEED] = {"latent_rel_l2": mean(devs), "latent_rel_l2_max": max(devs),
                           "chamfer_to_official": float(np.nanmean(to_official))}
    return out


def print_table(results: dict[str, dict[str, float]], sampler: SamplerParams, extra: tuple[str, ...]) -> None:
    rows = settings(extra)
    print(f"\n{'row':22s} {'fwd':>4s} {'latent rel L2':>17s} {'Chamfer to off.':>15s} {'Chamfer':>8s} "
          f"{'F-score':>8s} {'normal c.':>9s}")
    for name, r in results.items():
        row = rows.get(name, rows["official"])
        fwd = sampler_forward_passes(row["sampler"], row_params(row, sampler.cfg_interval, sampler.rescale_t))
        geometry = (f"{r['chamfer']:8.5f} {r['f_score']:8.3f} {r['normal_consistency']:9.3f}" if "chamfer" in r
                    else f"{'-':>8s} {'-':>8s} {'-':>9s}")
        print(f"{name:22s} {fwd:4d} {r['latent_rel_l2']:.4f} (<={r['latent_rel_l2_max']:.4f}) "
              f"{r['chamfer_to_official']:15.5f} {geometry}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="", help="folder keeping the toy data and the trained flow")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--p-uncond", type=float, default=0.1, help="condition dropout (guidance needs it)")
    parser.add_argument("--assets", type=int, default=16, help="training assets")
    parser.add_argument("--held", type=int, default=4, help="held-out assets")
    parser.add_argument("--train-seed", type=int, default=0, help="the training run's seed (draws, order)")
    parser.add_argument("--held-seed", type=int, default=99, help="the held-out assets' seed")
    parser.add_argument("--seeds", type=int, default=2, help="noise seeds per held-out asset")
    parser.add_argument("--extra", default="", help="candidate rows, e.g. euler:2:int8,euler:3:g1:int8")
    parser.add_argument("--json", default="", help="also write every row's numbers here")
    args = parser.parse_args()
    extra = tuple(x for x in args.extra.split(",") if x)
    setup_threads()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        train, held = work / "train", work / "held"
        shapes = make_slat_dataset(train, args.assets, points=256, seed=0)
        if not held.exists():
            make_slat_dataset(held, args.held, points=4096, seed=args.held_seed)
        release = fitted_release(work, train, shapes)
        sampler = read_pipeline_json(release).slat_sampler
        decoder, norm = build_mesh_decoder(slat_config(decoder={"release": str(release)}), CPU.device)
        flow = trained_flow(work, args, release)
        results = run_rows(flow, decoder, norm, held, args.seeds, sampler, extra)
        floor = mean_scores(latent_geometry_scores(
            [torch.randn(len(SLatAssetFolder(held, need_surface=False)[i].coords), 8,
                         generator=torch.Generator().manual_seed(i)) for i in range(args.held)],
            decoder, norm, held))
        ceiling = mean_scores(latent_geometry_scores(own_latents(held), decoder, norm, held))
    print(f"\nlatent stage per preset vs official on a trained tiny slat-flow ({args.steps} steps of {args.batch} on "
          f"{args.assets} toy assets), same voxels, noise and condition; {args.held} held-out assets x {args.seeds} "
          f"seeds; slat sampler interval {sampler.cfg_interval}, rescale_t {sampler.rescale_t}. Geometry vs the "
          f"exact surface: floor (noise decoded) Chamfer {floor['chamfer']:.5f}, F {floor['f_score']:.3f}, NC "
          f"{floor['normal_consistency']:.3f}; ceiling (own latents) {ceiling['chamfer']:.5f}, "
          f"{ceiling['f_score']:.3f}, {ceiling['normal_consistency']:.3f}")
    print_table(results, sampler, extra)
    if args.json:
        report = {"args": vars(args), "floor": floor, "ceiling": ceiling, "results": results}
        write_atomic(Path(args.json), lambda tmp: tmp.write_text(json.dumps(report, indent=1)))


if __name__ == "__main__":
    main()
