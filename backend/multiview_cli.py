"""``python -m backend generate --views a.png b.png ...`` (or one folder): several pictures of one object,
one mesh. The first view names the outputs and fixes the mesh's frame; every view is checked before any
model loads, so a missing file costs nothing."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .settings import BackendSettings

VIEW_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".tga")


def add_view_options(p: argparse.ArgumentParser) -> None:
    """``--views`` and ``--view-angles`` on the ``generate`` parser."""
    p.add_argument("--views", action="store_true",
                   help="the images (or the images of one folder, by name) are views of ONE object: one mesh "
                        "(hi3dgen; --param multiview_mode=stochastic|multidiffusion)")
    p.add_argument("--view-angles", default="", metavar="DEG,DEG,...",
                   help="with --views: each view's angle about the vertical axis (reported, not conditioned on)")


def view_paths(args: list[str]) -> list[Path]:
    """The view files, in order: the given files, or one folder's image files sorted by name."""
    from .errors import BadInput

    if len(args) == 1 and Path(args[0]).is_dir():
        paths = sorted(p for p in Path(args[0]).iterdir() if p.suffix.lower() in VIEW_SUFFIXES and p.is_file())
        if not paths:
            raise BadInput(f"The folder {args[0]} holds no images.", hint="Put the views' PNG or JPEG files in it.")
    else:
        paths = [Path(a) for a in args]
    for n, path in enumerate(paths, 1):
        if not path.is_file():
            raise BadInput(f"View {n} ({path}) is not a readable file.", hint="Check the path of every view.")
    if len(paths) < 2:
        raise BadInput("--views needs at least two views.", hint="Pass two or more images, or a folder of them.")
    return paths


def parse_angles(text: str) -> tuple[float, ...]:
    from .errors import BadInput

    try:
        return tuple(float(a) for a in text.split(",")) if text.strip() else ()
    except ValueError:
        raise BadInput(f"--view-angles {text[:60]!r} is not numbers separated by commas.",
                       hint="For example --view-angles 0,90,180.") from None


def run_views(args: argparse.Namespace, settings: BackendSettings) -> int:
    """Load every view, generate one result, write it under the first view's name; 0, 1 (failed) or 2 (bad input)."""
    from .batch import BatchJob, OutputNames, store
    from .engines import make_engines
    from .engines.base import EngineRequest, check_seed, validate_params
    from .errors import BackendError
    from .images import apply_mask, load_image
    from .jobs import JobContext

    if args.ray is not None:
        print("error: --views makes one mesh; it does not run on Ray. Drop --ray.", file=sys.stderr)
        return 2
    try:
        paths = view_paths(args.images)
        angles = parse_angles(args.view_angles)
        job = BatchJob(images=paths[:1], output=Path(args.output), engine=args.engine, seed=check_seed(args.seed),
                       params=_params(args), export_format=args.format, convention=args.convention,
                       mask=args.mask, camera_json=args.camera_json)
        images = [load_image(str(p)) for p in paths]
        if job.mask:
            images = [apply_mask(im, load_image(job.mask.replace("{stem}", p.stem))) for im, p in zip(images, paths)]
    except BackendError as exc:
        print(f"error: {exc.message} {exc.hint}".strip(), file=sys.stderr)
        return 2
    try:
        engine = make_engines(settings).get(job.engine)
        if engine is None:
            print(f"error: unknown engine '{job.engine}'.", file=sys.stderr)
            return 2
        request = EngineRequest(images[0], paths[0].stem, job.seed, validate_params(engine.params, job.params),
                                settings.device, views=tuple(images[1:]), view_angles=angles)
        result = engine.generate(request, JobContext())
        from .atomic import prepare_folder

        prepare_folder(job.output)
        store(job, paths[0], result, OutputNames())
    except BackendError as exc:
        print(f"FAILED {paths[0]}: {exc.message} {exc.hint}".strip(), file=sys.stderr)
        return 1
    print(f"{len(paths)} views -> {job.output / paths[0].stem}.{job.export_format}", file=sys.stderr)
    return 0


def _params(args: argparse.Namespace) -> dict[str, object]:
    from .cli import _parse_params

    return _parse_params(args.param)
