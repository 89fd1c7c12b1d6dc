"""Command line: ``python -m synthesis run --config FILE --out DIR``."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from backend.errors import BackendError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synthesis", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="make (or resume) a dataset: generate, filter, label, shard")
    run_p.add_argument("--config", required=True, help="a TOML run config, e.g. synthesis/configs/tiny.toml "
                       "(a relative path that is not a file here is also looked up in synthesis/: configs/tiny.toml)")
    run_p.add_argument("--out", required=True, help="output folder (empty, or a run to resume)")
    run_p.add_argument("--workers", type=int, help="local worker processes (overrides the config)")
    run_p.add_argument("--no-progress", action="store_true", help="no progress bars")
    run_p.add_argument("--ray", default=None, metavar="auto|ADDRESS",
                       help="run the tasks on Ray (pip install ray): auto = a local Ray, or a cluster's address")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except BackendError as exc:
        print(f"error: {exc.message}" + (f"\nhint: {exc.hint}" if exc.hint else ""), file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from .config import load_config
    from .pipeline import run

    config = load_config(_config_path(args.config))
    if args.workers is not None:
        if not 1 <= args.workers <= 256:
            print("error: --workers must be 1..256", file=sys.stderr)
            return 2
        config = dataclasses.replace(config, workers=args.workers)
    executor = None
    if args.ray is not None:
        from backend.farm import FarmConfig, FarmExecutor

        executor = FarmExecutor(FarmConfig(address=args.ray, gpu=False))
    summary = run(config, args.out, executor=executor, progress=not args.no_progress)
    m = summary.manifest
    counts = ", ".join(f"{s} {v['count']}" for s, v in m["splits"].items())
    print(f"dataset: {args.out}/dataset ({counts}); rejected {m['filters']['rejected_assets']} of "
          f"{m['filters']['judged_assets']}: {m['filters']['rejected'] or 'none'}")
    for r in summary.reports:
        if r.failed:
            print(f"{r.stage}: {len(r.failed)} failed (recorded as rejections)", file=sys.stderr)
    print("seconds per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in summary.seconds.items()))
    return 0


def _config_path(given: str) -> Path:
    """``given``, or the packaged config of that relative name (``configs/tiny.toml``) when no such file is here."""
    path = Path(given)
    packaged = Path(__file__).resolve().parent / path
    if not path.is_file() and not path.is_absolute() and ".." not in path.parts and packaged.is_file():
        return packaged
    return path
