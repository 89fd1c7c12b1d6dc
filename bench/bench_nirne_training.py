"""The NiRNE trainer's noise injection, measured: the same budget with injection on and off (tiny, CPU).

A generated data set (``training/nirne/shapes.py``: smooth textured "real" samples, sharp detailed
"synthetic" ones) and a tiny starting release whose VAE is fitted to it; then for each training seed two runs
that differ only in ``noise_t_max`` (the injected noise: U{0..T} of the DDPM schedule, 0 = off), both through
the paper's two stages (both streams on real, then the noisy stream alone on synthetic), with the same data,
batches (seed s of both arms draws the same samples), budget and hyper-parameters. Each export is scored on
three held-out looks through the inference pipeline: synthetic (clean renders of detail, the second stage's
domain), real (smooth, textured, noisy: few sharp pixels, so its SNE rests on few pixels) and captured (the
synthetic detail photographed with the real look: light, albedo texture, sensor noise; the paper's NE / SNE
benchmark is real captures of detailed objects). Scores: NE and SNE (degrees, mask eroded 10 px, sharp pixels by edge
detection on the ground truth), lower is better, and a detail ratio (the prediction's pixel-to-pixel normal
variation over the truth's: 1 = as sharp as the truth, below 1 = smoother). The summary gives mean +- std over
the seeds of each arm and of the paired difference (with - without). The VAE round trip (encode and decode the
true normal map) is printed as the floor a frozen tiny VAE allows. ``--figure`` writes image / truth / with /
without for two synthetic and two captured samples. ``--data-seed D`` draws another set (training at seed 2D,
held out at 2D + 1).

``--pretrain-steps N`` tests the diffusion-prior explanation: each seed's UNet is first pre-trained ONCE as an
epsilon-prediction denoiser (``training/nirne/prior.py``: DDPM objective over all t of the injection's schedule,
on the training images' latents), the control branch re-copied from its encoder, and both arms of that seed
start from that same prior. Its held-out epsilon MSE at a few t is printed before and after.

Run (defaults: 3 seeds, 8 + 8 samples of 64 px, 200 + 200 steps, batch 4, lr 1e-3, pixel_weight 1, t <= 400)::

    nice -n 10 .venv/bin/python bench/bench_nirne_training.py --jobs 6   # the 6 trainings side by side
    nice -n 10 .venv/bin/python bench/bench_nirne_training.py --pretrain-steps 1000 --jobs 2   # from a prior
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.distributed import World  # noqa: E402
from training.metrics import erode_mask, normal_map_metrics  # noqa: E402
from training.nirne.config import nirne_config_from_dict  # noqa: E402
from training.nirne.data import SampleFolder  # noqa: E402
from training.nirne.evaluate import evaluate_release  # noqa: E402
from training.nirne.init import write_tiny_init  # noqa: E402
from training.nirne.networks import load_networks  # noqa: E402
from training.nirne.prior import denoiser_error, image_latents, write_pretrained_init  # noqa: E402
from training.nirne.shapes import write_split  # noqa: E402
from training.nirne.trainer import train_nirne  # noqa: E402

CPU = World(rank=0, size=1, local_rank=0, device=torch.device("cpu"))
T = TypeVar("T")
R = TypeVar("R")
HELD_OUT = ("synthetic", "real", "captured")
"The held-out looks scored: clean renders of detail, smooth photos, photos of detail (``shapes.py``)."
KEYS = ("SNE", "NE", "NE_real", "SNE_real", "SNE_captured", "NE_captured", "detail", "detail_captured")
PROBE_T = (50, 200, 400, 800)
"Timesteps at which the pre-trained denoiser's held-out epsilon MSE is printed."


def _vae_floor(init: Path, split: Path) -> dict[str, float]:
    nets = load_networks(init)
    _, normals, masks = SampleFolder(split).stacked()
    with torch.no_grad():
        back = nets.vae.decode(nets.vae.encode(normals).latent_dist.mode()).sample
    rows = []
    for i in range(len(normals)):
        pred = back[i].permute(1, 2, 0).numpy()
        pred = pred / np.linalg.norm(pred, axis=-1, keepdims=True).clip(1e-6)
        truth, mask = normals[i].permute(1, 2, 0).numpy(), masks[i].numpy()
        inside = erode_mask(mask, 10)[1:, 1:]
        rows.append({**normal_map_metrics(pred, truth, mask),
                     "detail": _variation(pred, inside) / _variation(truth, inside)})
    return {k: float(np.nanmean([r[k] for r in rows])) for k in ("NE", "SNE", "detail")}


def _variation(normals: np.ndarray, inside: np.ndarray) -> float:
    """Mean |n(x+1) - n(x)| + |n(y+1) - n(y)| of unit normals [H, W, 3] over ``inside`` [H-1, W-1]."""
    dx = np.linalg.norm(normals[1:, 1:] - normals[1:, :-1], axis=-1)
    dy = np.linalg.norm(normals[1:, 1:] - normals[:-1, 1:], axis=-1)
    return float((dx + dy)[inside].mean())


def _detail_ratio(folder: Path, split: Path) -> float:
    """High-frequency content of the predictions over the truth's (1 = as much pixel-to-pixel variation as the
    ground truth, below 1 = smoother), mean over the samples, inside the 10 px eroded mask."""
    from backend.nirne.loading import load_nirne
    from backend.nirne.pipeline import estimate_normals

    models = load_nirne(folder, "cpu", torch.float32)
    ratios = []
    for sample in SampleFolder(split).samples:
        image = ((sample.pixels.permute(1, 2, 0).numpy() + 1.0) * 0.5).clip(0.0, 1.0)
        mask = sample.mask.numpy()
        pred = estimate_normals(models, image, mask, processing_resolution=max(image.shape[:2]))
        inside = erode_mask(mask, 10)[1:, 1:]
        ratios.append(_variation(pred, inside) / _variation(sample.normals.permute(1, 2, 0).numpy(), inside))
    return float(np.mean(ratios))


def _train(args: argparse.Namespace, init: Path, data: Path, out: Path, t_max: int, seed: int) -> Path:
    train = {"steps_real": args.steps_real, "steps_synthetic": args.steps_synthetic, "batch_size": 4,
             "lr": args.lr, "noise_t_max": t_max, "seed": seed, "export": "model", "export_dtype": "fp32",
             "log_every": 50, "save_every": 10**6, "pixel_weight": args.pixel_weight}
    config = nirne_config_from_dict({"model": {"init": str(init)}, "train": train})
    result = train_nirne(config, data, out, CPU, progress=lambda line: None)
    assert result.export is not None
    return result.export


def _init_of(root: Path, seed: int, args: argparse.Namespace) -> Path:
    """The starting release of seed ``seed``'s two arms: the tiny init, or its denoiser-pre-trained copy."""
    return root / f"prior_{seed}" if args.pretrain_steps > 0 else root / "init"


def _pretrain(task: tuple[argparse.Namespace, Path, int]) -> tuple[dict[int, float], dict[int, float], float]:
    """Pre-train seed ``seed``'s UNet as a denoiser (once, shared by both arms); its held-out epsilon MSE
    by timestep before and after."""
    args, root, seed = task
    torch.set_num_threads(max(1, args.threads))
    t0 = time.perf_counter()
    held = image_latents(load_networks(root / "init"), root / "held")
    before = denoiser_error(load_networks(root / "init").streams.unet, held, PROBE_T)
    folder, _ = write_pretrained_init(root / "init", root / "train", _init_of(root, seed, args),
                                      args.pretrain_steps, seed, lr=args.pretrain_lr)
    after = denoiser_error(load_networks(folder).streams.unet, held, PROBE_T)
    return before, after, time.perf_counter() - t0


def _run_arm(task: tuple[argparse.Namespace, Path, str, int, int]) -> tuple[dict[str, float], Path, float]:
    """Train one arm (``with`` / ``without``) for one seed and score its export on the held-out splits."""
    args, root, name, t_max, seed = task
    torch.set_num_threads(max(1, args.threads))
    t0 = time.perf_counter()
    export = _train(args, _init_of(root, seed, args), root / "train", root / f"{name}_{seed}", t_max, seed)
    metrics = {split: evaluate_release(export, root / "held" / split) for split in HELD_OUT}
    row = {"SNE": metrics["synthetic"]["SNE"], "NE": metrics["synthetic"]["NE"], "NE_real": metrics["real"]["NE"],
           "SNE_real": metrics["real"]["SNE"], "SNE_captured": metrics["captured"]["SNE"],
           "NE_captured": metrics["captured"]["NE"], "detail": _detail_ratio(export, root / "held" / "synthetic"),
           "detail_captured": _detail_ratio(export, root / "held" / "captured")}
    return row, export, time.perf_counter() - t0


def _figure(path: Path, splits: list[Path], exports: dict[str, Path], count: int = 2) -> None:
    """Rows of image | truth | each export's prediction, ``count`` samples of each split in turn."""
    import cv2

    from backend.nirne.loading import load_nirne
    from backend.nirne.pipeline import estimate_normals

    samples = [s for split in splits for s in SampleFolder(split).samples[:count]]
    models = {name: load_nirne(folder, "cpu", torch.float32) for name, folder in exports.items()}
    rows = []
    for s in samples:
        image = ((s.pixels.permute(1, 2, 0).numpy() + 1) * 0.5).clip(0, 1)
        tiles = [image, (s.normals.permute(1, 2, 0).numpy() + 1) * 0.5]
        for m in models.values():
            tiles.append((estimate_normals(m, image, s.mask.numpy(), processing_resolution=image.shape[0]) + 1) * 0.5)
        rows.append(np.concatenate(tiles, axis=1))
    picture = (np.concatenate(rows, axis=0)[..., ::-1] * 255).round().astype(np.uint8)
    picture = cv2.resize(picture, None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(path), picture)
    print(f"figure (image | truth | {' | '.join(models)}): {path}")


def _spread(values: list[float]) -> str:
    """``mean +- sample standard deviation`` (the std is 0 for one value)."""
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return f"{float(np.mean(values)):6.2f} +- {std:4.2f}"


def _summary(scores: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> None:
    """Mean +- std over seeds of each arm, and of the paired per-seed difference (with - without)."""
    seeds = len(scores["with"])
    print(f"\n{seeds} seed(s), {args.count} + {args.count} samples of {args.size} px, "
          f"{args.steps_real} + {args.steps_synthetic} steps, batch 4, lr {args.lr:g}, "
          f"pixel_weight {args.pixel_weight:g}, injection t <= {args.t_max}, {_start(args)} "
          "(NE / SNE: degrees, lower is better; "
          f"detail: the prediction's pixel-to-pixel variation over the truth's, 1 = as sharp as the truth):")
    for key in KEYS:
        with_, without = ([row[key] for row in scores[arm]] for arm in ("with", "without"))
        diff = [w - wo for w, wo in zip(with_, without)]
        # detail: the better arm is the one nearer the truth's 1; the errors: the lower one
        wins = sum(abs(1 - w) < abs(1 - wo) if key.startswith("detail") else w < wo for w, wo in zip(with_, without))
        print(f"  {key:15s} with {_spread(with_)}  without {_spread(without)}  "
              f"with - without {_spread(diff)}  (injection better on {wins}/{seeds} seeds)")


def _map(function: Callable[[T], R], tasks: list[T], jobs: int) -> list[R]:
    """``function`` over ``tasks``; with ``jobs`` > 1 side by side, one thread each (spawned, not forked)."""
    if jobs > 1:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            return list(pool.map(function, tasks))
    return [function(task) for task in tasks]


def _start(args: argparse.Namespace) -> str:
    if args.pretrain_steps <= 0:
        return "fresh streams"
    return (f"both arms from one denoiser prior per seed ({args.pretrain_steps} steps, lr {args.pretrain_lr:g}, "
            "batch 8, all t)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="seeds per arm (seed s: the same batches in both)")
    parser.add_argument("--steps-real", type=int, default=200)
    parser.add_argument("--steps-synthetic", type=int, default=200)
    parser.add_argument("--count", type=int, default=8, help="training samples per split")
    parser.add_argument("--held-out", type=int, default=8, help="held-out samples per split")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (a multiple of 16)")
    parser.add_argument("--t-max", type=int, default=400, help="noise_t_max of the injected run")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--pixel-weight", type=float, default=1.0, help="the angular loss; the same in both arms")
    parser.add_argument("--data-seed", type=int, default=0,
                        help="the generated set: training samples drawn at seed 2D, held-out ones at 2D + 1")
    parser.add_argument("--vae-steps", type=int, default=300)
    parser.add_argument("--pretrain-steps", type=int, default=0,
                        help="first pre-train each seed's UNet as an epsilon denoiser on the training images' "
                             "latents (all t, the injection's schedule; 0 = fresh streams), both arms start there")
    parser.add_argument("--pretrain-lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: on a shared, loaded machine 2 threads wait on each other)")
    parser.add_argument("--jobs", type=int, default=1, help="trainings run side by side (processes)")
    parser.add_argument("--figure", type=Path, default=None, help="write a PNG comparison here")
    args = parser.parse_args()
    torch.set_num_threads(max(1, args.threads))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for domain in ("real", "synthetic"):
            write_split(root / "train", domain, args.count, args.size, seed=2 * args.data_seed)
        for domain in HELD_OUT:
            write_split(root / "held", domain, args.held_out, args.size, seed=2 * args.data_seed + 1)
        t0 = time.perf_counter()
        write_tiny_init(root / "init", root / "train", vae_steps=args.vae_steps, seed=args.data_seed)
        print(f"tiny init (VAE fitted, {args.vae_steps} steps) in {time.perf_counter() - t0:.0f} s")
        for split in HELD_OUT:
            floor = _vae_floor(root / "init", root / "held" / split)
            start = evaluate_release(root / "init", root / "held" / split)
            print(f"held-out {split} (data seed {args.data_seed}): VAE round trip NE {floor['NE']:.2f} "
                  f"SNE {floor['SNE']:.2f} detail {floor['detail']:.2f}; untrained NE {start['NE']:.2f} "
                  f"SNE {start['SNE']:.2f}")
        if args.pretrain_steps > 0:
            priors = _map(_pretrain, [(args, root, seed) for seed in range(args.seeds)], min(args.jobs, args.seeds))
            for seed, (before, after, seconds) in enumerate(priors):
                print(f"seed {seed} prior ({args.pretrain_steps} steps, {seconds:.0f} s): held-out epsilon MSE "
                      + ", ".join(f"t={t} {before[t]:.3f} -> {after[t]:.3f}" for t in PROBE_T))
        tasks = [(args, root, name, t_max, seed) for seed in range(args.seeds)
                 for name, t_max in (("with", args.t_max), ("without", 0))]
        results = _map(_run_arm, tasks, args.jobs)
        scores: dict[str, list[dict[str, float]]] = {"with": [], "without": []}
        exports: dict[str, Path] = {}
        for (_, _, name, _, seed), (row, export, seconds) in zip(tasks, results):
            scores[name].append(row)
            exports[name] = export
            print(f"seed {seed} {name:7s} injection: held-out synthetic NE {row['NE']:.2f} SNE {row['SNE']:.2f} "
                  f"detail {row['detail']:.2f}, real NE {row['NE_real']:.2f} SNE {row['SNE_real']:.2f}, captured "
                  f"NE {row['NE_captured']:.2f} SNE {row['SNE_captured']:.2f} ({seconds:.0f} s)")
        _summary(scores, args)
        if args.figure is not None:
            _figure(args.figure, [root / "held" / "synthetic", root / "held" / "captured"], exports)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
