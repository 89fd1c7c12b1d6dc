"""Batch generation for the CLI: the same engines as the server, in-process, one image after another.

Outputs are ``<stem>.<format>`` (more meshes: ``<stem>_1.<format>``...), ``<stem>_normal.png`` and, when asked
and the engine estimated it, the input view's camera ``<stem>_camera.json`` (``backend/camera.py``). Two inputs
of one batch never write the same file: when a name is already taken by an earlier input (``a/x.png`` and
``b/x.png``, ``x.png`` and ``x.jpg``), the later one becomes ``<stem>-2`` (``-3``...), and a note says so.
Files left in the folder by an earlier run are replaced. Every file is written atomically.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import prepare_folder, write_bytes_atomic
from .engines import make_engines
from .engines.base import EngineRequest, EngineResult, validate_params
from .errors import BackendError
from .images import apply_mask, load_image
from .jobs import JobContext
from .normalmap import encode_png16, to_rgba16
from .settings import BackendSettings


@dataclass
class BatchJob:
    images: list[Path]
    output: Path
    engine: str = "relief"
    seed: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    normals_only: bool = False
    export_format: str = "glb"
    convention: str = "opengl"
    normal_map: str = ""
    mask: str = ""
    "Mask image path; ``{stem}`` is replaced by each image's file name without suffix."
    camera_json: bool = False
    "Write ``<stem>_camera.json`` when the engine returns the input view's camera (``stats['camera']``)."


def run_batch(job: BatchJob, settings: BackendSettings, show_progress: bool) -> list[tuple[Path, str]]:
    """Process every image; return (image, one-line reason) for each failure. Others still run.

    Raises ``WriteFailed`` before any work when the output folder cannot be created or written.
    """
    prepare_folder(job.output)
    engines = make_engines(settings)
    failures: list[tuple[Path, str]] = []
    names = OutputNames()
    for n, path in enumerate(job.images, 1):
        ctx = JobContext(report=_bar(path.name, n, len(job.images)) if show_progress else JobContext().report)
        note = ""
        try:
            note = _one(job, engines, path, ctx, settings, names)
        except BackendError as exc:
            failures.append((path, f"{exc.message} {exc.hint}".strip()))
        except MemoryError:
            failures.append((path, "out of memory"))
        except Exception as exc:  # one bad image must not stop the batch; the reason fits on one line
            failures.append((path, f"unexpected error: {type(exc).__name__}: {exc}".replace("\n", " ")))
        if show_progress:
            print(file=sys.stderr)
        if note:
            print(note, file=sys.stderr)
    return failures


class OutputNames:
    """The file names this batch has written (case-folded: ``X.glb`` and ``x.glb`` are one file on macOS)."""

    def __init__(self) -> None:
        self.taken: set[str] = set()

    def claim(self, stem: str, files: list[str]) -> str:
        """The first of ``stem``, ``stem-2``, ``stem-3``... for which no file ``stem + f`` is taken; claims them."""
        n, base = 1, stem
        while any((base + f).casefold() in self.taken for f in files):
            n += 1
            base = f"{stem}-{n}"
        self.taken.update((base + f).casefold() for f in files)
        return base


def _one(job: BatchJob, engines: dict, path: Path, ctx: JobContext, settings: BackendSettings,
         names: OutputNames) -> str:
    """Generate and write one image's outputs; returns a note when its files had to be renamed."""
    from .errors import BadInput

    engine = engines.get(job.engine)
    if engine is None:
        raise BadInput(f"Unknown engine '{job.engine}'.", hint=f"Use one of: {', '.join(engines)}.")
    normal_map = load_image(job.normal_map) if job.normal_map else None
    image = load_image(str(path))
    if job.mask:
        image = apply_mask(image, load_image(job.mask.replace("{stem}", path.stem)))
    request = EngineRequest(image, path.stem, job.seed,
                            validate_params(engine.params, job.params), settings.device, normal_map)
    result = engine.normals(request, ctx) if job.normals_only else engine.generate(request, ctx)
    files = ["_normal.png"] if result.normal_map is not None else []
    files += [("" if i == 0 else f"_{i}") + f".{job.export_format}" for i in range(len(result.meshes))]
    files += ["_camera.json"] if _camera(job, result) is not None else []
    stem = names.claim(path.stem, files)
    _write(job, stem, result)
    return "" if stem == path.stem else f"note: {path} is written as {stem}* ({path.stem}* is used by an earlier input)"


def _camera(job: BatchJob, result: EngineResult) -> dict[str, Any] | None:
    camera = result.stats.get("camera")
    return camera if job.camera_json and isinstance(camera, dict) else None


def _write(job: BatchJob, stem: str, result: EngineResult) -> None:
    import json

    from .mesh.export import export_mesh

    camera = _camera(job, result)
    if camera is not None:
        write_bytes_atomic(job.output / f"{stem}_camera.json", json.dumps(camera, indent=1).encode("utf-8"))
    if result.normal_map is not None:
        nm = result.normal_map
        png = encode_png16(to_rgba16(nm.normals, nm.mask, job.convention))
        write_bytes_atomic(job.output / f"{stem}_normal.png", png)
    for i, mesh in enumerate(result.meshes):
        suffix = "" if i == 0 else f"_{i}"
        export_mesh(mesh.vertices, mesh.faces, job.output / f"{stem}{suffix}.{job.export_format}", mesh.normals)
    if camera is not None and result.meshes and job.export_format == "glb":  # the GLB opens at the input view
        from .camera import Camera
        from .mesh.glb_camera import add_camera

        add_camera(job.output / f"{stem}.glb", Camera.from_dict(camera))


def _bar(name: str, n: int, total: int):  # noqa: ANN202 - a ProgressFn
    def report(stage: str, step: int, steps: int, message: str) -> None:
        frac = step / steps if steps else 0.0
        filled = int(frac * 24)
        line = f"\r[{n}/{total}] {name[:28]:28} {stage:10} [{'#' * filled}{'.' * (24 - filled)}] {message[:30]:30}"
        print(line, end="", file=sys.stderr, flush=True)
    return report
