"""Batch generation for the CLI: the same engines as the server, in-process, one image after another.

Outputs are ``<stem>.<format>`` (more meshes: ``<stem>_1.<format>``...) and ``<stem>_normal.png``, plus
``<stem>.mtl`` for OBJ (``result_files.py``; for OBJ the stem keeps only letters, digits, ``.-_``) and, when
asked and the engine estimated it, the input view's camera ``<stem>_camera.json`` (``backend/camera.py``). Two inputs
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
from .mesh.obj import safe_stem
from .result_files import output_suffixes, write_result
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


MEMORY_REFUSED = "refused, not enough device memory: "
"How a failure refused by the memory plan starts (the CLI exits with ``EXIT_MEMORY`` then)."


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
            refused = MEMORY_REFUSED if exc.code == "insufficient_memory" else ""
            failures.append((path, f"{refused}{exc.message} {exc.hint}".strip()))
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
    """Generate and write one image's outputs; returns notes (renamed files, a mask warning), one per line."""
    return store(job, path, generate_one(job, engines, path, ctx, settings), names)[2]


def generate_one(job: BatchJob, engines: dict, path: Path, ctx: JobContext, settings: BackendSettings) -> EngineResult:
    """One image's result, nothing written (a Ray worker runs this; the driver writes)."""
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
    return engine.normals(request, ctx) if job.normals_only else engine.generate(request, ctx)


def store(job: BatchJob, path: Path, result: EngineResult, names: OutputNames) -> tuple[str, list[str], str]:
    """Write ``result`` under a free stem; returns (stem, the file names written, notes one per line)."""
    base = safe_stem(path.stem) if job.export_format == "obj" and result.meshes else path.stem
    camera = _camera(job, result)
    suffixes = output_suffixes(result, job.export_format) + (["_camera.json"] if camera else [])
    stem = names.claim(base, suffixes)
    _write(job, stem, result)
    notes = []
    if stem != path.stem:
        why = (f"{path.stem}* is used by an earlier input" if base == path.stem
               else "OBJ and MTL names hold only letters, digits, '.', '-' and '_'")
        notes.append(f"note: {path} is written as {stem}* ({why})")
    memory = result.stats.get("memory")
    if isinstance(memory, dict) and "predicted_peak_gib" in memory:
        notes.append(f"memory: {path}: predicted peak {memory['predicted_peak_gib']:.1f} GiB ({memory['mode']})")
    warning = mask_warning(result.stats)
    if warning:
        notes.append(f"WARNING: {path}: {warning}")
    texture = result.stats.get("texture")
    if isinstance(texture, dict) and texture.get("note"):  # hi3dgen without a camera: no textures
        notes.append(f"note: {path}: {texture['note']}")
    return stem, [stem + s for s in suffixes], "\n".join(notes)


def mask_warning(stats: dict[str, Any]) -> str:
    """The result's mask warning (``stats["mask"]["warning"]``), '' when there is none."""
    report = stats.get("mask")
    return str(report.get("warning") or "") if isinstance(report, dict) else ""


def _camera(job: BatchJob, result: EngineResult) -> dict[str, Any] | None:
    camera = result.stats.get("camera")
    return camera if job.camera_json and isinstance(camera, dict) else None


def _write(job: BatchJob, stem: str, result: EngineResult) -> None:
    """Every file of one result; with ``--camera-json`` also ``<stem>_camera.json`` and the GLB's camera."""
    write_result(result, job.output, stem, job.export_format, job.convention)
    camera = _camera(job, result)
    if camera is not None:
        _write_camera(job, stem, result, camera)


def _write_camera(job: BatchJob, stem: str, result: EngineResult, camera: dict[str, Any]) -> None:
    """``<stem>_camera.json``, and the camera in the GLB so that it opens at the input view."""
    import json

    write_bytes_atomic(job.output / f"{stem}_camera.json", json.dumps(camera, indent=1).encode("utf-8"))
    if result.meshes and job.export_format == "glb":
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
