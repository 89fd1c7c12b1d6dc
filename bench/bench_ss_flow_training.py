"""The sparse-structure flow trainer on the toy data set (tiny configs, CPU), with numbers.

``overfit``: how far the flow-matching loss falls on a few assets (the mean of the last 10 steps' losses
against the first 10's), then the trained flow's loss at fixed times t (where the rest of the loss sits).
``heldout``: training from the seeded initial weights on a training set, then the initial and the trained flow
on *held-out* assets (other shapes, never trained on): each asset's latent is sampled with the engine's Euler
sampler from its condition, decoded by the frozen structure decoder, and the decoded surface is compared with
the exact one: Chamfer distance (lower is better), F-score at one decoder cell and normal consistency
(higher is better). The held-out assets' own latents, decoded, give the ceiling.
``regulariser``: the same budget with the normal regulariser off and on, over several seeds; each trained
flow is sampled, decoded, and the decoded field's normals compared with the true ones at the surface points
(mean angle, degrees; lower is better). The decoder is the one the toy latents were fitted to (the toy set
inverts it), so its decoded normals mean something.

Why the flow is 128 channels wide here (the tests use 64): with 2^3 patches a token carries 8 x 8 = 64 values,
and near t = 1 the target (eps - x0) needs the token's noise passed through. A 64-channel stream, ending in an
affine-free LayerNorm, has no room to spare: the loss stalls near 0.27, most of it at high t (0.19-0.26 at
t = 0.97, where x0 is already memorised), whatever the lr. At 128 channels the same runs pass 10x.

Run (the README's figures; nice -n 10 on the shared 2-core machine):
``.venv/bin/python bench/bench_ss_flow_training.py overfit --steps 300 --assets 1 --batch 1``,
``... heldout --steps 300 --assets 8`` and ``... regulariser --steps 60 --seeds 3``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from training_runs import every, mean, quiet, report_losses, setup_threads, spread

from backend.models.loading import load_checkpoint
from tests.training.conftest import CPU, DECODER, FLOW
from training.config import TrainConfig, config_from_dict
from training.data import AssetFolder
from training.evaluate import decoded_normal_error, geometry_scores, mean_scores, sample_structure_logits
from training.flow_matching import diffuse, target_velocity
from training.normal_loss import angular_error_degrees
from training.synthetic import make_dataset
from training.trainer import build_decoder, build_flow, train_ss_flow


def bench_config(args: argparse.Namespace, **train) -> TrainConfig:
    flow = {"variant": FLOW["variant"], "overrides": {**FLOW["overrides"], "model_channels": args.channels}}
    settings = {"steps": args.steps, "batch_size": args.batch, "lr": args.lr, "lr_schedule": args.schedule,
                "warmup_steps": args.warmup, "p_uncond": 0.0, "ema_rate": 0.9, "log_every": 1,
                "save_every": 10**6, "export": "model", **train}
    return config_from_dict({"model": flow, "decoder": DECODER, "train": settings})


def toy_decoder() -> torch.nn.Module:
    """The frozen structure decoder of the tests (16^3 logits): the toy latents are fitted to it."""
    return build_decoder(config_from_dict({"decoder": DECODER}), CPU.device)


def toy_set(folder: Path, count: int, seed: int = 0) -> Path:
    make_dataset(folder, toy_decoder(), count, points=2048, fit_steps=30, seed=seed)
    return folder


@torch.no_grad()
def loss_at_times(flow: torch.nn.Module, data: Path, times: tuple[float, ...], draws: int = 4) -> list[float]:
    """The flow-matching MSE at fixed t, averaged over the assets and ``draws`` seeded noises."""
    assets = AssetFolder(data, need_surface=False)
    out = []
    for t in times:
        losses = []
        for i in range(len(assets)):
            x0, cond = assets[i].latent[None], assets[i].cond[None]
            for d in range(draws):
                noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1000 * i + d))
                tt = torch.tensor([t])
                v = flow(diffuse(x0, noise, tt, 1e-5), 1000.0 * tt, cond)
                losses.append(float((v - target_velocity(x0, noise, 1e-5)).square().mean()))
        out.append(mean(losses))
    return out


def overfit(root: Path, args: argparse.Namespace) -> None:
    data = toy_set(root / "data", args.assets)
    start = time.perf_counter()
    result = train_ss_flow(bench_config(args), data, root / "overfit", CPU, progress=every(50))
    report_losses(f"overfit: {args.assets} asset(s), {args.channels} channels, {args.steps} steps of {args.batch}, "
                  f"lr {args.lr} {args.schedule}", result.losses, time.perf_counter() - start)
    times = (0.05, 0.2, 0.5, 0.8, 0.97)
    losses = loss_at_times(load_checkpoint(result.export).eval(), data, times)
    print("  trained flow's loss at t: " + ", ".join(f"{t:g}: {v:.3f}" for t, v in zip(times, losses)))


def _geometry_line(name: str, scores: dict[str, float]) -> str:
    return (f"{name}: Chamfer {scores['chamfer']:.4f}, F-score@{scores['threshold']:.4f} {scores['f_score']:.3f}, "
            f"normal consistency {scores['normal_consistency']:.3f}")


def heldout(root: Path, args: argparse.Namespace) -> None:
    train, held = toy_set(root / "train", args.assets, seed=0), toy_set(root / "held", 4, seed=99)
    decoder = toy_decoder()
    config = bench_config(args)
    initial = build_flow(config, CPU.device)[0].eval()  # the weights the run starts from (same seed)
    start = time.perf_counter()
    result = train_ss_flow(config, train, root / "heldout", CPU, progress=every(50))
    report_losses(f"training: {args.assets} assets, {args.steps} steps of {args.batch}", result.losses,
                  time.perf_counter() - start)
    trained = load_checkpoint(result.export).eval()
    for name, flow in (("initial", initial), ("trained", trained)):
        logits = sample_structure_logits(flow, decoder, held, steps=args.sample_steps)
        print(_geometry_line(f"held-out ({name})", mean_scores(geometry_scores(logits, held))))
    logits = sample_structure_logits(trained, decoder, train, steps=args.sample_steps)
    print(_geometry_line("training set (trained)", mean_scores(geometry_scores(logits, train))))
    assets = AssetFolder(held, need_surface=False)
    with torch.no_grad():
        own = [decoder(assets[i].latent[None])[0, 0] for i in range(len(assets))]
    print(_geometry_line("held-out assets' own latents (ceiling)", mean_scores(geometry_scores(own, held))))


def regulariser(root: Path, args: argparse.Namespace) -> None:
    data = toy_set(root / "data", args.assets)
    decoder = toy_decoder()
    assets = AssetFolder(data, need_surface=True)
    with torch.no_grad():
        floor = mean([float(angular_error_degrees(decoder(a.latent[None])[:, 0], a.points[None],  # type: ignore[index]
                                                  a.normals[None]).mean())  # type: ignore[index]
                      for a in (assets[i] for i in range(len(assets)))])
    print(f"the assets' own latents decode to normals {floor:.2f} deg from the truth (the floor)")
    errors: dict[float, list[float]] = {0.0: [], args.normal_weight: []}
    for seed in range(args.seeds):
        for weight in errors:
            config = bench_config(args, normal_weight=weight, normal_points=512, seed=seed)
            result = train_ss_flow(config, data, root / f"s{seed}_w{weight:g}", CPU, progress=quiet)
            error = decoded_normal_error(load_checkpoint(result.export), decoder, data, steps=args.sample_steps)
            errors[weight].append(error)
            print(f"seed {seed}, normal_weight {weight:g}: {args.steps} steps, last-10 loss "
                  f"{mean(result.losses[-10:]):.4f}, decoded normals {error:.2f} deg from the truth", flush=True)
    for weight, values in errors.items():
        if values:
            print(f"normal_weight {weight:g}: decoded-normal error {spread(values)} deg over seeds")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", choices=("overfit", "heldout", "regulariser"))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--channels", type=int, default=128, help="the flow's model_channels (the tests use 64)")
    parser.add_argument("--schedule", default="cosine", choices=("constant", "cosine"),
                        help="lr after the warmup: cosine decay to lr / 100, or constant")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--assets", type=int, default=4)
    parser.add_argument("--normal-weight", type=float, default=1.0)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sample-steps", type=int, default=10)
    args = parser.parse_args()
    setup_threads()
    with tempfile.TemporaryDirectory() as tmp:
        {"overfit": overfit, "heldout": heldout, "regulariser": regulariser}[args.run](Path(tmp), args)


if __name__ == "__main__":
    main()
