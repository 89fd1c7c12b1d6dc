"""Command line: ``python -m training ss-flow|slat-flow|nirne ...`` (also under ``torchrun``) and the toy data
sets (``toy-data``, ``slat-toy-data``, ``nirne-data``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    ss = sub.add_parser("ss-flow", help="train the sparse-structure flow (torchrun for several processes)")
    ss.add_argument("--config", type=Path, required=True, help="TOML file (see training/config.py)")
    ss.add_argument("--data", type=Path, required=True, help="folder of .npz assets (see training/data.py)")
    ss.add_argument("--out", type=Path, default=Path("runs/ss_flow"), help="logs, checkpoints and export")
    ss.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    ss.add_argument("--stop-at", type=int, default=None, help="stop (checkpointed) after this many steps")
    ss.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    slat = sub.add_parser("slat-flow", help="train the structured-latent flow (torchrun for several processes)")
    slat.add_argument("--config", type=Path, required=True, help="TOML file (see training/config.py)")
    slat.add_argument("--data", type=Path, required=True, help="folder of .npz assets (see training/slat_data.py)")
    slat.add_argument("--out", type=Path, default=Path("runs/slat_flow"), help="logs, checkpoints and export")
    slat.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    slat.add_argument("--stop-at", type=int, default=None, help="stop (checkpointed) after this many steps")
    slat.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    slat_toy = sub.add_parser("slat-toy-data", help="write a toy structured-latent data set of small shapes")
    slat_toy.add_argument("folder", type=Path)
    slat_toy.add_argument("--count", type=int, default=4)
    slat_toy.add_argument("--seed", type=int, default=0)
    slat_toy.add_argument("--config", type=Path, default=None, help="a training config whose flow to match")
    toy = sub.add_parser("toy-data", help="write a toy data set of spheres and boxes")
    toy.add_argument("folder", type=Path)
    toy.add_argument("--count", type=int, default=4)
    toy.add_argument("--fit-steps", type=int, default=50, help="decoder-inversion steps per latent")
    toy.add_argument("--config", type=Path, default=None, help="a training config whose [decoder] to invert")
    _nirne_parsers(sub)
    return parser


def _nirne_parsers(sub: argparse._SubParsersAction) -> None:
    nirne = sub.add_parser("nirne", help="train the NiRNE normal estimator (torchrun for several processes)")
    nirne.add_argument("--config", type=Path, required=True, help="TOML file (see training/nirne/config.py)")
    nirne.add_argument("--data", type=Path, required=True, help="folder with real/ and synthetic/ .npz samples")
    nirne.add_argument("--out", type=Path, default=Path("runs/nirne"), help="logs, checkpoints and export")
    nirne.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    nirne.add_argument("--stop-at", type=int, default=None, help="stop (checkpointed) after this many steps")
    nirne.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    data = sub.add_parser("nirne-data", help="write a generated NiRNE data set (and a tiny starting release)")
    data.add_argument("folder", type=Path)
    data.add_argument("--real", type=int, default=8, help="samples of the real-domain split")
    data.add_argument("--synthetic", type=int, default=8, help="samples of the synthetic split")
    data.add_argument("--size", type=int, default=64, help="image side in pixels (a multiple of 8)")
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--init", type=Path, default=None,
                      help="also write a tiny yoso-normal folder here, its VAE fitted to this data")
    data.add_argument("--vae-steps", type=int, default=300)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "ss-flow":
            return _ss_flow(args)
        if args.command == "nirne":
            return _nirne(args)
        if args.command == "nirne-data":
            return _nirne_data(args)
        if args.command == "slat-flow":
            return _slat_flow(args)
        if args.command == "slat-toy-data":
            return _slat_toy_data(args)
        return _toy_data(args)
    except ValueError as exc:  # bad config, data or arguments: one readable line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _ss_flow(args: argparse.Namespace) -> int:
    from .config import load_config
    from .trainer import train_ss_flow

    return _train(args, load_config, train_ss_flow)


def _toy_data(args: argparse.Namespace) -> int:
    import torch

    from backend.models.configs import SSFlowConfig

    from .config import TrainConfig, load_config
    from .synthetic import make_dataset
    from .trainer import build_decoder, network_config

    config = load_config(args.config) if args.config else TrainConfig()
    if not 1 <= args.count <= 100_000 or not 0 <= args.fit_steps <= 100_000:
        raise ValueError("--count must be in [1, 100000] and --fit-steps in [0, 100000]")
    decoder = build_decoder(config, torch.device("cpu"))
    flow = network_config(config.model.variant, config.model.overrides, SSFlowConfig)
    make_dataset(args.folder, decoder, args.count, channels=flow.cond_channels, fit_steps=args.fit_steps,
                 seed=config.train.seed)
    print(args.folder)
    return 0


def _nirne(args: argparse.Namespace) -> int:
    from .nirne.config import load_nirne_config
    from .nirne.trainer import train_nirne

    return _train(args, load_nirne_config, train_nirne)


def _nirne_data(args: argparse.Namespace) -> int:
    from .nirne.init import write_tiny_init
    from .nirne.shapes import write_split

    if not 0 <= args.real <= 1_000_000 or not 0 <= args.synthetic <= 1_000_000 or args.real + args.synthetic < 1:
        raise ValueError("--real and --synthetic must be in [0, 1000000], at least one sample in all")
    if not 0 <= args.seed < 2**31 or not 0 <= args.vae_steps <= 100_000:
        raise ValueError("--seed must be in [0, 2^31) and --vae-steps in [0, 100000]")
    for domain, count in (("real", args.real), ("synthetic", args.synthetic)):
        if count:
            write_split(args.folder, domain, count, args.size, args.seed)
    if args.init is not None:
        write_tiny_init(args.init, args.folder, vae_steps=args.vae_steps, seed=args.seed)
        print(args.init)
    print(args.folder)
    return 0


def _slat_flow(args: argparse.Namespace) -> int:
    from .config import load_config
    from .slat_trainer import train_slat_flow

    return _train(args, load_config, train_slat_flow)


def _slat_toy_data(args: argparse.Namespace) -> int:
    from backend.models.configs import SLatFlowConfig

    from .config import TrainConfig, load_config
    from .slat_synthetic import make_slat_dataset
    from .slat_trainer import flow_variant
    from .trainer import network_config

    config = load_config(args.config) if args.config else TrainConfig()
    if not 0 <= args.seed <= 2**31:
        raise ValueError("--seed must be in [0, 2^31]")
    flow = network_config(flow_variant(config.model), config.model.overrides, SLatFlowConfig)
    make_slat_dataset(args.folder, args.count, channels=flow.cond_channels, seed=args.seed)
    print(args.folder)
    return 0


def _train(args: argparse.Namespace, load: Callable[[Path], Any], train: Callable[..., Any]) -> int:
    """Load and check the config, start the process group, train, print the export (main process)."""
    from .distributed import start, stop

    config = load(args.config)
    if args.stop_at is not None and args.stop_at < 1:
        raise ValueError("--stop-at must be at least 1")
    world = start(args.device)
    try:
        result = train(config, args.data, args.out, world, resume=args.resume, stop_at=args.stop_at)
    finally:
        stop(world)
    if world.is_main and result.export is not None:
        print(result.export)
    return 0
