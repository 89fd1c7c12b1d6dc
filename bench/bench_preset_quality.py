"""Each hi3dgen preset's structure stage on a *trained* tiny sparse-structure flow, against official's.

``bench_presets.py`` measures the presets' deviation from official on a small *random* ss-flow, whose smooth
velocity field says little about what fewer steps and int8 do to a trained one. Here a tiny flow (the held-out
bench's: ``bench_ss_flow_training.py heldout``, 128 channels, 2^3 patches) is trained with our own trainer on
toy assets (``training/synthetic.py``), with condition dropout on (``p_uncond`` 0.1, the trainer's default and
the release's: guidance needs an unconditional branch, which the held-out bench, sampling unguided, leaves
off). Then, for each held-out condition and noise seed, the structure latent is sampled exactly as the engine
samples it for each preset (``backend.presets.PRESETS``: sampler, steps, guidance; the release's cfg interval
(0.5, 1.0) and ``rescale_t`` 3; zero negative condition; cond and uncond as two passes, as on a CPU; the flow
quantised by ``backend.quant.quantize_int8`` where the preset quantises), same noise and condition for all
presets, and decoded by the frozen structure decoder the toy latents were fitted to.

Per preset, over the held-out samples: relative L2 of the latent to official's, IoU of the decoded occupancy
(logits > 0, 16^3) with official's, and the decoded surface against the exact one as the held-out bench scores
it (``training.evaluate.geometry_scores``: Chamfer, F-score at one decoder cell, normal consistency). Two
diagnostic rows, ``standard/fp32`` and ``draft/fp32``, run the preset's sampler without int8 (the sampler's share
of the deviation; the rest is int8's). A yardstick row, ``official/seed'``: official against itself with the
next noise seed, same condition (what reseeding changes; deviations well under it are below the seed's).
The same on two random flows for comparison: the trained flow's seeded initial weights (``initial``; same
conditions, so the geometry is scored too) and ``bench_flow_solvers``' small random ss-flow (``random-small``,
the one behind ``bench_presets.deviations``: its condition is random DINOv2-sized tokens, not a shape, so only
the latent and occupancy deviations are scored; its draw 0 is exactly ``bench_presets``' figure).

Run (about 10 minutes on the shared 2-core machine):
``nice -n 10 .venv/bin/python bench/bench_preset_quality.py`` (``--work DIR`` keeps the data and the trained
flow, so a second run only samples; ``--steps``, ``--assets``, ``--held``, ``--seeds`` shrink or grow it).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from bench_flow_solvers import build_flow as build_random_flow
from bench_flow_solvers import rel
from bench_ss_flow_training import bench_config, toy_decoder, toy_set
from torch import nn
from training_runs import every, mean, report_losses, setup_threads

from backend.atomic import write_atomic
from backend.models.loading import load_checkpoint
from backend.presets import PRESETS
from backend.quant import quantize_int8
from backend.sampling import SamplerParams, sample_flow_euler
from backend.sampling_heun import sample_flow_heun, sampler_forward_passes
from tests.training.conftest import CPU
from training.config import TrainConfig
from training.data import AssetFolder
from training.evaluate import geometry_scores, mean_scores
from training.trainer import build_flow, train_ss_flow

CFG_INTERVAL, RESCALE_T = (0.5, 1.0), 3.0
"The release's structure-stage interval and time warp (the engine's, for every preset)."
OTHER_SEED = "official/seed'"
"The yardstick row: official against official with the next noise seed (same condition)."


def settings(extra: tuple[str, ...] = (), stage: str = "ss") -> dict[str, dict]:
    """Row name -> (sampler, steps, guidance, int8) of ``stage`` ("ss": the structure stage, "slat": the latent
    stage) for each preset, plus the non-official presets in float32, plus candidate rows ``extra``
    ("sampler:steps[:gG][:rR][:iLO][:int8]": guidance 3 unless ``gG``, the stage's time warp unless ``rR``,
    guidance while t >= its interval's start unless ``iLO`` (guided only while t >= LO), float32 unless
    ``int8``; a preset not yet made)."""
    rows = {}
    for preset in PRESETS.values():
        v = preset.values
        rows[preset.name] = {"sampler": v["sampler"], "steps": v[f"{stage}_steps"],
                             "guidance": v[f"{stage}_guidance"], "int8": v["quantize"] in ("int8", "int8_on_cpu")}
        if v.get(f"{stage}_rescale_t"):  # 0 or absent: the stage's own (the release's) warp
            rows[preset.name]["rescale"] = v[f"{stage}_rescale_t"]
    for name in list(rows):
        if rows[name]["int8"]:
            rows[f"{name}/fp32"] = {**rows[name], "int8": False}
    for spec in extra:
        sampler, steps, *flags = spec.split(":")
        values = {f[0]: float(f[1:]) for f in flags if f != "int8"}  # g, r, i
        row = {"sampler": sampler, "steps": int(steps), "guidance": values.get("g", 3.0), "int8": "int8" in flags}
        row.update({key: values[c] for key, c in (("rescale", "r"), ("lo", "i")) if c in values})
        rows[spec if flags else f"{sampler}{steps}/fp32"] = row
    return rows


def row_params(row: dict, interval: tuple[float, float], rescale_t: float) -> SamplerParams:
    """``row``'s sampler settings on a stage whose own are ``interval`` and ``rescale_t``."""
    return SamplerParams(row["steps"], row["guidance"], (row.get("lo", interval[0]), interval[1]),
                         row.get("rescale", rescale_t))


def sample(flow: nn.Module, noise: torch.Tensor, cond: torch.Tensor, row: dict) -> torch.Tensor:
    """The structure latent [1, 8, 16, 16, 16] as the engine samples it on a CPU with ``row``'s settings."""
    fn = sample_flow_heun if row["sampler"] == "heun" else sample_flow_euler
    neg = torch.zeros_like(cond)  # outside inference mode: the K/V cache reads its version counter
    params = row_params(row, CFG_INTERVAL, RESCALE_T)
    with torch.inference_mode():
        return fn(flow, noise, cond, neg, steps=params.steps, cfg_strength=params.cfg_strength,
                  cfg_interval=params.cfg_interval, rescale_t=params.rescale_t, batch_cfg=False)


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """IoU of the occupancies (logits > 0) of two decoded fields; 1 when both are empty."""
    occ_a, occ_b = a > 0, b > 0
    union = int((occ_a | occ_b).sum())
    return 1.0 if union == 0 else int((occ_a & occ_b).sum()) / union


Draw = Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]
"(condition index, seed) -> (noise [1, 8, 16, 16, 16], cond [1, L, C])."


def run_flow(label: str, flow: nn.Module, decoder: nn.Module, draw: Draw, count: int, seeds: int,
             held: Path | None, cache: int = 0, extra: tuple[str, ...] = ()) -> dict[str, dict[str, float]]:
    """Every row's latents for ``count`` conditions x ``seeds`` noises; per row the mean deviations (and, with
    ``held``, the geometry against the held-out assets' surfaces, condition i being asset i). ``cache``: the
    cross-attention K/V cache size of both copies (exact; 0 as in the engine)."""
    flow = flow.eval()
    quantized = quantize_int8(flow)
    flow.set_context_cache(cache)
    quantized.set_context_cache(cache)
    rows = settings(extra)
    latents: dict[str, list[torch.Tensor]] = {name: [] for name in rows}
    start = time.perf_counter()
    for seed in range(seeds):
        for i in range(count):
            noise, cond = draw(i, seed)
            for name, row in rows.items():
                latents[name].append(sample(quantized if row["int8"] else flow, noise, cond, row))
    with torch.no_grad():
        logits = {name: [decoder(x)[0, 0] for x in xs] for name, xs in latents.items()}
    print(f"{label}: {count} conditions x {seeds} seeds sampled in {time.perf_counter() - start:.0f} s", flush=True)
    ref_latents, ref_logits = latents["official"], logits["official"]
    out = {}
    for name in rows:
        devs = [rel(x, r) for x, r in zip(latents[name], ref_latents)]
        ious = [iou(x, r) for x, r in zip(logits[name], ref_logits)]
        result = {"latent_rel_l2": mean(devs), "latent_rel_l2_max": max(devs), "iou": mean(ious),
                  "iou_min": min(ious)}
        if held is not None:
            scores = [s for k in range(seeds) for s in geometry_scores(logits[name][k * count:(k + 1) * count], held)]
            result.update(mean_scores(scores))
        out[name] = result
    if seeds > 1:  # the yardstick: what another noise seed changes, same condition, official settings
        pairs = [(k * count + i, (k + 1) % seeds * count + i) for k in range(seeds) for i in range(count)]
        devs = [rel(ref_latents[a], ref_latents[b]) for a, b in pairs]
        ious = [iou(ref_logits[a], ref_logits[b]) for a, b in pairs]
        out[OTHER_SEED] = {"latent_rel_l2": mean(devs), "latent_rel_l2_max": max(devs), "iou": mean(ious),
                           "iou_min": min(ious)}
    return out


def print_table(label: str, results: dict[str, dict[str, float]], extra: tuple[str, ...] = ()) -> None:
    print(f"\n{label}")
    print(f"{'preset':14s} {'fwd':>4s} {'latent rel L2':>15s} {'IoU vs official':>17s} {'Chamfer':>8s} "
          f"{'F-score':>8s} {'normal c.':>9s}")
    rows = settings(extra)
    for name, r in results.items():
        row = rows.get(name, rows["official"])
        forwards = sampler_forward_passes(row["sampler"], row_params(row, CFG_INTERVAL, RESCALE_T))
        geometry = (f"{r['chamfer']:8.4f} {r['f_score']:8.3f} {r['normal_consistency']:9.3f}" if "chamfer" in r
                    else f"{'-':>8s} {'-':>8s} {'-':>9s}")
        print(f"{name:14s} {forwards:4d} {r['latent_rel_l2']:.4f} (<={r['latent_rel_l2_max']:.4f}) "
              f"{r['iou']:7.3f} (>={r['iou_min']:.3f}) {geometry}", flush=True)


def trained_flow(work: Path, args: argparse.Namespace, config: TrainConfig) -> nn.Module:
    """The flow trained on ``work / "train"`` (reused from an earlier run with the same ``--work``)."""
    out = work / "run"
    export = out / "export" / "ckpts" / config.train.export_name
    if export.with_suffix(".json").exists():
        print(f"reusing the trained flow {export}")
        return load_checkpoint(export)
    start = time.perf_counter()
    result = train_ss_flow(config, work / "train", out, CPU, progress=every(50))
    report_losses(f"training: {args.assets} assets, {args.steps} steps of {args.batch}, p_uncond {args.p_uncond}",
                  result.losses, time.perf_counter() - start)
    return load_checkpoint(result.export)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="", help="folder keeping the toy data and the trained flow")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--channels", type=int, default=128)
    parser.add_argument("--schedule", default="cosine", choices=("constant", "cosine"))
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--p-uncond", type=float, default=0.1, help="condition dropout (guidance needs it)")
    parser.add_argument("--assets", type=int, default=8, help="training assets")
    parser.add_argument("--train-seed", type=int, default=0, help="the training run's seed (draws, order); give it "
                        "its own --work, which keeps the flow trained first")
    parser.add_argument("--held-seed", type=int, default=99, help="the held-out assets' seed")
    parser.add_argument("--held", type=int, default=4, help="held-out assets (the conditions)")
    parser.add_argument("--seeds", type=int, default=2, help="noise seeds per held-out condition")
    parser.add_argument("--random-samples", type=int, default=2, help="noise/condition draws on random-small")
    parser.add_argument("--skip-random", action="store_true", help="no random-small rows")
    parser.add_argument("--skip-initial", action="store_true", help="no rows for the untrained (initial) flow")
    parser.add_argument("--json", default="", help="also write every row's numbers here")
    parser.add_argument("--extra", default="", help="candidate rows, e.g. euler:8,heun:4 (float32, guidance 3), "
                        "euler:5:g1:int8")
    args = parser.parse_args()
    extra = tuple(x for x in args.extra.split(",") if x)
    setup_threads()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for name, count, seed in (("train", args.assets, 0), ("held", args.held, args.held_seed)):
            if not (work / name).exists():
                toy_set(work / name, count, seed=seed)
        held, decoder = work / "held", toy_decoder()
        config = bench_config(args, p_uncond=args.p_uncond, seed=args.train_seed)
        initial = build_flow(config, CPU.device)[0]  # the seeded weights training starts from
        trained = trained_flow(work, args, config)
        assets = AssetFolder(held, need_surface=False)

        def draw_held(i: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
            noise = torch.randn(1, 8, 16, 16, 16, generator=torch.Generator().manual_seed(1000 * seed + i))
            return noise, assets[i].cond[None]

        results = {"trained": run_flow("trained", trained, decoder, draw_held, len(assets), args.seeds, held,
                                       extra=extra)}
        if not args.skip_initial:
            results["initial"] = run_flow("initial", initial, decoder, draw_held, len(assets), args.seeds, held,
                                          extra=extra)
        with torch.no_grad():
            own = [decoder(assets[i].latent[None])[0, 0] for i in range(len(assets))]
        ceiling = mean_scores(geometry_scores(own, held))
        if not args.skip_random:
            small, noise0, cond0 = build_random_flow("small")

            def draw_random(i: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
                if i == 0:
                    return noise0, cond0  # bench_presets.deviations' draw
                generator = torch.Generator().manual_seed(1 + i)
                return torch.randn(1, 8, 16, 16, 16, generator=generator), torch.randn(1, 1374, 1024,
                                                                                       generator=generator)

            results["random-small"] = run_flow("random-small", small, decoder, draw_random, args.random_samples, 1,
                                               None, cache=2)
    print(f"\nstructure stage per preset vs official, same noise and condition; geometry vs the exact surface of "
          f"the {len(assets)} held-out assets x {args.seeds} seeds (their own latents decoded, the ceiling: "
          f"Chamfer {ceiling['chamfer']:.4f}, F-score {ceiling['f_score']:.3f}, normal consistency "
          f"{ceiling['normal_consistency']:.3f}); latent and IoU: mean (worst)")
    labels = {"trained": f"trained tiny flow ({args.steps} steps of {args.batch} on {args.assets} toy assets)",
              "initial": "the same flow's seeded initial weights (random)",
              "random-small": f"bench_flow_solvers' small random ss-flow ({args.random_samples} draws; "
                              "condition not a shape: no geometry)"}
    for key, result in results.items():
        print_table(labels[key], result, extra)
    if args.json:
        report = {"args": vars(args), "ceiling": ceiling, "results": results}
        write_atomic(Path(args.json), lambda tmp: tmp.write_text(json.dumps(report, indent=1)))


if __name__ == "__main__":
    main()
