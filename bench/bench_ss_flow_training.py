"""Two runs of the sparse-structure flow trainer on the toy data set (tiny configs, CPU), with numbers.

``overfit``: how far the flow-matching loss falls on a few assets (the mean of the last 10 steps' losses
against the first 10's; the test asserts a smaller drop in fewer steps, this shows the 10x one).
``regulariser``: the same budget with the normal regulariser off and on; each trained flow is sampled with the
engine's Euler sampler, decoded, and the decoded field's normals compared with the true ones at the surface
points (mean angle, degrees; lower is better).

Run: ``.venv/bin/python bench/bench_ss_flow_training.py overfit --steps 600`` or ``... regulariser --steps 150``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.training.conftest import CPU, tiny_config  # noqa: E402
from training.evaluate import decoded_normal_error  # noqa: E402
from training.synthetic import make_dataset  # noqa: E402
from training.trainer import build_decoder, train_ss_flow  # noqa: E402


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _every(n: int):
    """A progress callback printing every ``n``-th line (the trainer logs every step here)."""
    count = [0]

    def show(line: str) -> None:
        count[0] += 1
        if count[0] % n == 0:
            print(line, flush=True)

    return show


def overfit(root: Path, data: Path, args: argparse.Namespace) -> None:
    start = time.perf_counter()
    config = tiny_config(steps=args.steps, batch_size=args.batch, lr=args.lr, p_uncond=0.0, t_mean=args.t_mean,
                         lr_schedule=args.schedule, warmup_steps=args.warmup)
    losses = train_ss_flow(config, data, root / "overfit", CPU, progress=_every(25)).losses
    first, last = _mean(losses[:10]), _mean(losses[-10:])
    print(f"overfit: {args.assets} assets, {args.steps} steps of {args.batch}, lr {args.lr} {args.schedule}: "
          f"loss {first:.4f} -> {last:.4f} (x{first / last:.1f} lower) in {time.perf_counter() - start:.0f} s")
    for i in range(0, len(losses), max(1, len(losses) // 10)):
        print(f"  steps {i + 1:4d}-{i + 10:4d}: {_mean(losses[i:i + 10]):.4f}")


def regulariser(root: Path, data: Path, args: argparse.Namespace) -> None:
    decoder = build_decoder(tiny_config(), torch.device("cpu"))
    for weight in (0.0, args.normal_weight):
        config = tiny_config(steps=args.steps, batch_size=args.batch, lr=args.lr, p_uncond=0.0,
                             normal_weight=weight, normal_points=512, export="model")
        out = root / f"normal_{weight:g}"
        result = train_ss_flow(config, data, out, CPU, progress=lambda line: None)
        from backend.models.loading import load_checkpoint

        flow = load_checkpoint(result.export)
        error = decoded_normal_error(flow, decoder, data, steps=args.sample_steps)
        print(f"normal_weight {weight:g}: {args.steps} steps, final loss {_mean(result.losses[-10:]):.4f}, "
              f"decoded normals {error:.2f} deg from the truth")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", choices=("overfit", "regulariser"))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--t-mean", type=float, default=1.0)
    parser.add_argument("--schedule", default="cosine", choices=("constant", "cosine"),
                        help="lr after the warmup: cosine decay to lr / 100 (what the 10x drop needs) or constant")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--assets", type=int, default=4)
    parser.add_argument("--normal-weight", type=float, default=1.0)
    parser.add_argument("--sample-steps", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_dataset(root / "data", build_decoder(tiny_config(), torch.device("cpu")), args.assets, points=2048,
                     fit_steps=30)
        (overfit if args.run == "overfit" else regulariser)(root, root / "data", args)


if __name__ == "__main__":
    main()
