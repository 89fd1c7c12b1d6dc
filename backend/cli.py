"""Command line: ``serve`` (for the add-on), ``generate`` and ``normals`` (batch), ``info``, ``download``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import __version__
from .mesh.export import EXPORT_FORMATS
from .settings import BackendSettings

EXIT_MEMORY = 3
"Exit status when an image was refused by the memory plan (it would not fit the device); 1: other failures."
PATHS_EPILOG = ("Image paths that start with '-' go after '--', behind every option "
                "(python -m backend generate -o out -- -photo.png), or as ./-photo.png.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m backend", description="Hi3DGen backend.")
    parser.add_argument("--version", action="version", version=f"hi3dgen-backend {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="speak the binary protocol on stdin/stdout (used by the add-on)")
    _common(serve)
    for name, text in (("generate", "image(s) -> mesh + normal map"), ("normals", "image(s) -> normal map")):
        p = sub.add_parser(name, help=text, epilog=PATHS_EPILOG)
        p.add_argument("images", nargs="+", help="input image files (PNG, JPEG, WebP, BMP, TIFF or TGA)")
        p.add_argument("-o", "--output", default="out",
                       help="output folder (default: out, in the current folder; created if missing)")
        p.add_argument("--engine", default="relief", help="relief (default) or hi3dgen")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                       help="engine parameter, repeatable (e.g. --param resolution=384)")
        p.add_argument("--normal-map", default="", help="use this normal map instead of estimating one")
        p.add_argument("--mask", default="", metavar="FILE",
                       help="mask image (white/opaque = object) instead of the alpha or the estimate; "
                            "{stem} stands for each image's name, e.g. masks/{stem}.png")
        p.add_argument("--convention", default="opengl", choices=("opengl", "directx", "object"),
                       help="colour convention of the written normal map")
        if name == "generate":
            from .presets import PRESET_NAMES

            p.add_argument("--preset", default=None, choices=PRESET_NAMES,
                           help="hi3dgen speed/quality preset (default official: the app's path); it sets the steps, "
                                "guidance, sampler and quantize that no --param gives (see `info`)")
            p.add_argument("--format", default="glb", choices=EXPORT_FORMATS)
            p.add_argument("--camera-json", action="store_true",
                           help="write <stem>_camera.json, the input view's camera (hi3dgen's align step; the relief's "
                                "own front view), and put "
                                "that camera into the GLB")
            from .multiview_cli import add_view_options

            add_view_options(p)
        p.add_argument("--ray", default=None, metavar="auto|ADDRESS",
                       help="run on Ray (pip install ray): auto = a local Ray on this machine, or a cluster's "
                            "address; one worker per GPU or CPU, failures retried, a re-run skips finished images")
        _common(p)
    info = sub.add_parser("info", help="print versions, devices, engines with their parameters, and weights")
    info.add_argument("--json", action="store_true", help="one machine-readable JSON object instead of text")
    _common(info)
    dl = sub.add_parser("download", help="download model weights from the Hugging Face Hub (resumable)",
                        epilog="HF_ENDPOINT points at a mirror; HF_TOKEN is sent for gated models.")
    dl.add_argument("models", nargs="+", metavar="NAME", help="model names, as `info` lists them "
                    "(trellis-normal, dinov2, yoso-normal; rmbg is the optional segmenter), or hi3dgen "
                    "(its three models) or segmenter")
    dl.add_argument("--json", action="store_true", help="machine-readable progress: one JSON object a line")
    dl.add_argument("--plan", action="store_true", help="show sizes and licences only; download nothing")
    dl.add_argument("--yes", "-y", action="store_true", help="do not ask before downloading")
    _weights_dir(dl)
    return parser


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="auto (default), cuda, mps or cpu")
    p.add_argument("--threads", default=None, type=int, metavar="N",
                   help="CPU threads for torch (default: $HI3DGEN_THREADS, else torch's choice, one per core)")
    p.add_argument("--memory", default=None, choices=("offload", "resident"),
                   help="hi3dgen device memory: offload (default; one stage's networks on the device at a time) "
                        "or resident (all stay there; faster on big cards)")
    p.add_argument("--memory-budget", default=None, type=float, metavar="GIB",
                   help="device memory hi3dgen may plan for, in GiB (default: what the device reports free)")
    _weights_dir(p)


def _weights_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights-dir", default=None, help="folder with one sub-folder per model")


def main(argv: list[str] | None = None) -> int:
    from .errors import BadInput

    args = build_parser().parse_args(argv)
    try:
        settings = BackendSettings.from_env(device=getattr(args, "device", None), weights_dir=args.weights_dir,
                                            allow_download=True if args.command == "download" else None,
                                            context="serve" if args.command == "serve" else "cli",
                                            threads=getattr(args, "threads", None),
                                            memory=getattr(args, "memory", None),
                                            memory_budget_gb=getattr(args, "memory_budget", None))
    except BadInput as exc:  # a wrong thread count or memory setting (flag or environment)
        print(f"error: {exc.message} {exc.hint}", file=sys.stderr)
        return 2
    if settings.threads and not _threads_applied(settings.threads):
        return 2
    if args.command == "serve":
        from .server import serve_stdio

        return serve_stdio(settings)
    if args.command == "info":
        from .info import print_info

        return print_info(settings, as_json=args.json)
    if args.command == "download":
        from .download_cli import run_download

        return run_download(settings, args.models, as_json=args.json, plan_only=args.plan, assume_yes=args.yes)
    return _batch(args, settings)


def _threads_applied(threads: int) -> bool:
    """Set torch's threads once, here at the entry point; False (after saying why) for a bad count."""
    from .errors import BadInput
    from .threads import apply_threads

    try:
        apply_threads(threads)
    except BadInput as exc:
        print(f"error: {exc.message} {exc.hint}", file=sys.stderr)
        return False
    return True


def _batch(args: argparse.Namespace, settings: BackendSettings) -> int:
    from .batch import BatchJob, run_batch
    from .engines.base import check_seed
    from .errors import BadInput, WriteFailed

    if getattr(args, "preset", None):  # a --param preset=... given too wins, as any explicit parameter
        if args.engine != "hi3dgen":
            print(f"error: --preset is a hi3dgen option; the {args.engine} engine has none.", file=sys.stderr)
            return 2
        args.param = [f"preset={args.preset}", *args.param]
    if getattr(args, "views", False):
        from .multiview_cli import run_views

        return run_views(args, settings)
    try:
        seed = check_seed(args.seed)
    except BadInput as exc:  # refused before any model loads
        print(f"error: {exc.message} {exc.hint}", file=sys.stderr)
        return 2
    job = BatchJob(images=[Path(p) for p in args.images], output=Path(args.output), engine=args.engine,
                   seed=seed, params=_parse_params(args.param), normals_only=args.command == "normals",
                   export_format=getattr(args, "format", "glb"), convention=args.convention,
                   normal_map=args.normal_map, mask=args.mask, camera_json=getattr(args, "camera_json", False))
    t0 = time.perf_counter()
    try:
        if args.ray is not None:
            failures = _ray_batch(job, settings, args.ray)
        else:
            failures = run_batch(job, settings, show_progress=sys.stderr.isatty())
    except WriteFailed as exc:  # the output folder itself: nothing could be written, so nothing ran
        print(f"error: {exc.message} {exc.hint}", file=sys.stderr)
        return 1
    done = len(args.images) - len(failures)
    if sys.stderr.isatty():
        print(f"{done}/{len(args.images)} done in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    for path, reason in failures:
        print(f"FAILED {_one_line(str(path))}: {_one_line(reason)}", file=sys.stderr)
    from .batch import MEMORY_REFUSED

    if any(reason.startswith(MEMORY_REFUSED) for _, reason in failures):
        return EXIT_MEMORY
    return 1 if failures else 0


def _ray_batch(job, settings: BackendSettings, address: str) -> list[tuple[Path, str]]:  # noqa: ANN001
    """``run_batch`` on Ray (backend/farm_batch.py); says how many images an earlier run already finished."""
    from .errors import BadInput
    from .farm import FarmConfig
    from .farm_batch import run_batch_ray

    try:
        report = run_batch_ray(job, settings, FarmConfig(address=address, progress=sys.stderr.isatty()))
    except BadInput as exc:  # no ray package, an unreachable cluster
        print(f"error: {exc.message} {exc.hint}", file=sys.stderr)
        raise SystemExit(2) from None
    if report.skipped:
        print(f"note: {report.skipped} of {len(job.images)} images were finished by an earlier run (skipped)",
              file=sys.stderr)
    return report.failures


def _one_line(text: str) -> str:
    """``text`` with control characters (a newline in a file name) written as escapes: one line per failure."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _parse_params(pairs: list[str]) -> dict[str, object]:
    import json

    params: dict[str, object] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep:
            raise SystemExit(f"--param expects NAME=VALUE, got {pair!r}")
        try:
            params[name] = json.loads(raw)
        except ValueError:
            params[name] = raw  # enum values need no quotes
    return params
