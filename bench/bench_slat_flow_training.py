"""The structured-latent flow trainer on toy data (tiny configs, CPU), with numbers.

``overfit``: how far the flow-matching loss falls on a few assets (mean of the last 10 steps' losses against
the first 10's; the test asserts a smaller drop in fewer steps, this shows the 10x one).
``heldout``: fine-tuning from a release folder's (random tiny) latent flow on a training set, then both the
starting weights and the fine-tuned ones on held-out assets of the same distribution: the flow-matching loss
at fixed draws, the squared error of latents the engine's sampler makes (lower is better), and their geometry.
For the geometry the release's mesh decoder is first fitted to the *training* assets
(``training_runs.fitted_release``, ``slat_synthetic.fit_mesh_decoder``; a random decoder decodes no surface in
particular); each held-out asset's latent is sampled on its voxels (the same noise for both flows), decoded,
meshed by the engine's marching cubes at 256^3 and scored against the exact toy surface
(``slat_geometry.latent_geometry_scores``: Chamfer distance, F-score at one mesh cube 1/256, normal
consistency; mean over the held-out assets). Two references: the sampler's starting noise decoded as it is
(the floor) and the held-out assets' own latents decoded (the ceiling this decoder allows).

Run (what the README's figures come from, on the busy 2-core machine):
``.venv/bin/python bench/bench_slat_flow_training.py overfit --steps 120 --assets 1 --batch 1 --lr 1e-2`` and
``... heldout --steps 20 --assets 4 --batch 1 --sample-steps 4`` (about 30 s) and, a budget at which the
geometry moves, ``... heldout --steps 300 --assets 16 --batch 2 --sample-steps 10 --seed S`` (S = 0, 1, 2; about a
minute each).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from training_runs import every, fitted_release, report_losses, setup_threads

from backend.models.loading import load_checkpoint, load_network
from tests.training.conftest import CPU
from tests.training.test_slat_flow import slat_config
from training.evaluate import mean_scores
from training.slat_data import SLatAssetFolder
from training.slat_evaluate import sample_latents, sampled_latent_error, validation_loss
from training.slat_geometry import latent_geometry_scores, own_latents
from training.slat_synthetic import make_slat_dataset
from training.slat_trainer import build_mesh_decoder, train_slat_flow


def _train(args: argparse.Namespace, **extra) -> dict:
    return {"steps": args.steps, "batch_size": args.batch, "lr": args.lr, "lr_schedule": args.schedule,
            "warmup_steps": args.warmup, "seed": args.seed, **extra}


def overfit(root: Path, args: argparse.Namespace) -> None:
    data = root / "train"
    make_slat_dataset(data, args.assets, points=256)
    start = time.perf_counter()
    losses = train_slat_flow(slat_config(**_train(args)), data, root / "overfit", CPU, progress=every(25)).losses
    report_losses(f"overfit: {args.assets} assets, {args.steps} steps of {args.batch}, lr {args.lr} {args.schedule}",
                  losses, time.perf_counter() - start)


def _geometry(label: str, latents: list[torch.Tensor], decoder, norm, held: Path) -> None:
    m = mean_scores(latent_geometry_scores(latents, decoder, norm, held))
    print(f"held-out geometry ({label}): Chamfer {m['chamfer']:.5f}, F-score@1/256 {m['f_score']:.3f} "
          f"(precision {m['precision']:.3f}, recall {m['recall']:.3f}), normal consistency "
          f"{m['normal_consistency']:.3f}", flush=True)


def _noise(held: Path, seed: int = 0) -> list[torch.Tensor]:
    """The sampler's starting noise per held-out asset (``sample_latents``' draws)."""
    assets = SLatAssetFolder(held, need_surface=False)
    return [torch.randn(len(assets[i].coords), 8, generator=torch.Generator().manual_seed(seed + i))
            for i in range(len(assets))]


def heldout(root: Path, args: argparse.Namespace) -> None:
    train, held = root / "train", root / "held"
    shapes = make_slat_dataset(train, args.assets, points=256, seed=0)
    make_slat_dataset(held, 4, points=args.surface_points, seed=99)  # the points change no latent
    release = fitted_release(root, train, shapes)
    decoder, norm = build_mesh_decoder(slat_config(decoder={"release": str(release)}), CPU.device)
    config = slat_config(model={"init": str(release)}, **_train(args, ema_rate=0.99, export="model"))
    result = train_slat_flow(config, train, root / "heldout", CPU, progress=every(25))
    before, after = load_network(release, "slat_flow_model"), load_checkpoint(result.export)
    _geometry("starting noise, the floor", _noise(held), decoder, norm, held)
    for name, flow in (("initial", before), ("fine-tuned", after)):
        loss = validation_loss(flow, held)
        err = sampled_latent_error(flow, held, steps=args.sample_steps)
        print(f"held-out ({name}): flow-matching loss {loss:.4f}, sampled-latent MSE {err:.4f}")
        _geometry(name, sample_latents(flow, held, steps=args.sample_steps), decoder, norm, held)
    _geometry("own latents, the ceiling", own_latents(held), decoder, norm, held)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", choices=("overfit", "heldout"))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--schedule", default="cosine", choices=("constant", "cosine"))
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--assets", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0, help="the training run's seed (draws, order)")
    parser.add_argument("--sample-steps", type=int, default=10)
    parser.add_argument("--surface-points", type=int, default=4096, help="exact surface samples per held-out asset")
    args = parser.parse_args()
    setup_threads()
    with tempfile.TemporaryDirectory() as tmp:
        (overfit if args.run == "overfit" else heldout)(Path(tmp), args)


if __name__ == "__main__":
    main()
