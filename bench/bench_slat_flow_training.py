"""The structured-latent flow trainer on toy data (tiny configs, CPU), with numbers.

``overfit``: how far the flow-matching loss falls on a few assets (mean of the last 10 steps' losses against
the first 10's; the test asserts a smaller drop in fewer steps, this shows the 10x one).
``heldout``: fine-tuning from a release folder's (random tiny) latent flow on a training set, then both the
starting weights and the fine-tuned ones on held-out assets of the same distribution: the flow-matching loss
at fixed draws and the squared error of latents the engine's sampler makes (lower is better).

Run (what the README's figures come from, on the busy 2-core machine):
``.venv/bin/python bench/bench_slat_flow_training.py overfit --steps 120 --assets 1 --batch 1 --lr 1e-2`` and
``... heldout --steps 20 --assets 4 --batch 1 --sample-steps 4``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from training_runs import every, report_losses, setup_threads

from backend.models.loading import load_checkpoint, load_network
from backend.models.testing import write_release_folder
from tests.training.conftest import CPU
from tests.training.test_slat_flow import slat_config
from training.slat_evaluate import sampled_latent_error, validation_loss
from training.slat_synthetic import make_slat_dataset
from training.slat_trainer import train_slat_flow


def _train(args: argparse.Namespace, **extra) -> dict:
    return {"steps": args.steps, "batch_size": args.batch, "lr": args.lr, "lr_schedule": args.schedule,
            "warmup_steps": args.warmup, **extra}


def overfit(root: Path, args: argparse.Namespace) -> None:
    data = root / "train"
    make_slat_dataset(data, args.assets, points=256)
    start = time.perf_counter()
    losses = train_slat_flow(slat_config(**_train(args)), data, root / "overfit", CPU, progress=every(25)).losses
    report_losses(f"overfit: {args.assets} assets, {args.steps} steps of {args.batch}, lr {args.lr} {args.schedule}",
                  losses, time.perf_counter() - start)


def heldout(root: Path, args: argparse.Namespace) -> None:
    train, held = root / "train", root / "held"
    make_slat_dataset(train, args.assets, points=256, seed=0)
    make_slat_dataset(held, 4, points=256, seed=99)
    release = write_release_folder(root / "release")
    config = slat_config(model={"init": str(release)}, **_train(args, ema_rate=0.99, export="model"))
    result = train_slat_flow(config, train, root / "heldout", CPU, progress=every(25))
    before, after = load_network(release, "slat_flow_model"), load_checkpoint(result.export)
    for name, flow in (("initial", before), ("fine-tuned", after)):
        loss = validation_loss(flow, held)
        err = sampled_latent_error(flow, held, steps=args.sample_steps)
        print(f"held-out ({name}): flow-matching loss {loss:.4f}, sampled-latent MSE {err:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", choices=("overfit", "heldout"))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--schedule", default="cosine", choices=("constant", "cosine"))
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--assets", type=int, default=4)
    parser.add_argument("--sample-steps", type=int, default=10)
    args = parser.parse_args()
    setup_threads()
    with tempfile.TemporaryDirectory() as tmp:
        (overfit if args.run == "overfit" else heldout)(Path(tmp), args)


if __name__ == "__main__":
    main()
