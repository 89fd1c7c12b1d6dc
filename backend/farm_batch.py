"""``python -m backend generate|normals --ray``: the batch on a Ray ``Farm``; a re-run skips finished images.

Workers (one per GPU or CPU slot) keep the engines loaded and return each image's result; the driver writes
it with the local batch's own code (``batch.store``), so the files are the same bytes as a local run's and
only the output folder needs to be writable from the driver. Input files must be readable on every node
(shared storage on a real cluster). Names: as locally, a later input whose stem an earlier input already
uses becomes ``<stem>-2``; results of such same-stem inputs are written in input order.

Resume: after an image's files are all written, a record goes to ``<out>/.hi3dgen-done/`` (the input's
path, a digest of its bytes, the mask and normal map, and the job's settings, and the files). A re-run
skips an image whose record matches and whose files all exist; anything else is generated again (files
replaced). A killed driver or worker therefore loses at most the images in flight; the half-written
temporaries a killed driver leaves (of this job's images) are removed when the job runs again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from . import __version__
from .atomic import prepare_folder, write_bytes_atomic
from .batch import BatchJob, OutputNames, generate_one, store
from .engines import make_engines
from .errors import BackendError
from .farm import Farm, FarmConfig, Outcome
from .jobs import JobContext
from .mesh.obj import safe_stem
from .settings import BackendSettings

DONE_DIR = ".hi3dgen-done"


@dataclass
class RayBatchReport:
    failures: list[tuple[Path, str]] = field(default_factory=list)
    "(image, one-line reason), in input order: the same lines as the local batch."
    skipped: int = 0
    "Finished by an earlier run."
    generated: int = 0
    retried: list[Path] = field(default_factory=list)
    "Images that needed more than one attempt."


def run_batch_ray(job: BatchJob, settings: BackendSettings, farm: FarmConfig,
                  pool: Farm | None = None) -> RayBatchReport:
    """The batch of ``job`` on a Ray farm; ``WriteFailed`` before any work when the output is unusable.

    ``pool``: a ``batch_farm`` already started (kept open, its workers warm); else one for this call.
    """
    prepare_folder(job.output)
    remove_stale_temporaries(job)
    ledger = Ledger(job)
    names = OutputNames()
    report = RayBatchReport()
    todo: list[int] = []
    for i, path in enumerate(job.images):
        files = ledger.finished(path)
        if files is None:
            todo.append(i)
        else:
            names.taken.update(f.casefold() for f in files)
            report.skipped += 1
    writer = _OrderedWriter(job, ledger, names, report, [job.images[i] for i in todo])
    own = pool is None
    pool = pool or batch_farm(settings, farm)
    try:
        for outcome in pool.map(GenerateImage(job, settings), writer.paths):
            writer.resolve(outcome)
    finally:
        if own:
            pool.close()
    report.failures.sort(key=lambda f: job.images.index(f[0]))
    return report


_TEMP = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{8}\.tmp$")  # backend/atomic.py's temporary names


def remove_stale_temporaries(job: BatchJob) -> None:
    """Half-written files a killed earlier run left: of this job's images' outputs, and of its records."""
    stems = {s.casefold() for p in job.images for s in (p.stem, safe_stem(p.stem))}
    for folder, any_name in ((job.output, False), (job.output / DONE_DIR, True)):
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            match = _TEMP.match(entry.name)
            if match and entry.is_file() and (any_name or _ours(match["name"], stems)):
                entry.unlink(missing_ok=True)


def _ours(name: str, stems: set[str]) -> bool:
    """Whether output name ``name`` starts with one of ``stems`` then '-', '_' or '.' (``x-2_normal.png``)."""
    name = name.casefold()
    return any(name.startswith(stem) and name[len(stem):][:1] in ("-", "_", ".") for stem in stems)


def batch_farm(settings: BackendSettings, farm: FarmConfig) -> Farm:
    """A farm whose workers hold this backend's engines (GPU workers unless the device is the CPU)."""
    gpu = False if settings.device == "cpu" else farm.gpu
    config = FarmConfig(farm.address, farm.workers, gpu, farm.retries, farm.in_flight, farm.progress, "images")
    return Farm(partial(make_engines, settings), config)


class GenerateImage:
    """The worker's part: one image's result, or ``(reason, None)`` for a failure no retry can fix."""

    def __init__(self, job: BatchJob, settings: BackendSettings) -> None:
        self.job, self.settings = job, settings

    def __call__(self, engines: dict, path: Path) -> tuple[str, Any]:
        try:
            return "", generate_one(self.job, engines, path, JobContext(), self.settings)
        except BackendError as exc:
            return f"{exc.message} {exc.hint}".strip(), None
        except MemoryError:
            return "out of memory", None


class _OrderedWriter:
    """Writes finished results; inputs sharing a stem are written in input order (so names match local)."""

    def __init__(self, job: BatchJob, ledger: Ledger, names: OutputNames, report: RayBatchReport,
                 paths: list[Path]) -> None:
        self.job, self.ledger, self.names, self.report, self.paths = job, ledger, names, report, paths
        self.queues: dict[str, deque[int]] = {}
        for i, path in enumerate(paths):
            self.queues.setdefault(self._group(path), deque()).append(i)
        self.ready: dict[int, Outcome] = {}

    def _group(self, path: Path) -> str:
        return (safe_stem(path.stem) if self.job.export_format == "obj" else path.stem).casefold()

    def resolve(self, outcome: Outcome) -> None:
        self.ready[outcome.index] = outcome
        queue = self.queues[self._group(self.paths[outcome.index])]
        while queue and queue[0] in self.ready:
            self._finish(self.ready.pop(queue.popleft()))

    def _finish(self, outcome: Outcome) -> None:
        path = self.paths[outcome.index]
        if outcome.attempts > 1:
            self.report.retried.append(path)
        if outcome.error:
            reason = outcome.error if outcome.crashed else f"unexpected error: {outcome.error}"
            self.report.failures.append((path, f"{reason} (tried {outcome.attempts} times)"))
            return
        reason, result = outcome.value
        if reason:
            self.report.failures.append((path, reason))
            return
        try:
            stem, files, notes = store(self.job, path, result, self.names)
            self.ledger.record(path, stem, [f for f in files if (self.job.output / f).is_file()])
        except BackendError as exc:
            self.report.failures.append((path, f"{exc.message} {exc.hint}".strip()))
            return
        self.report.generated += 1
        if notes:
            print(notes, file=sys.stderr)


class Ledger:
    """``<out>/.hi3dgen-done/<hash of the input path>.json``: which images this job already finished."""

    def __init__(self, job: BatchJob) -> None:
        self.job = job
        self.folder = job.output / DONE_DIR
        settings = {"engine": job.engine, "seed": job.seed, "params": job.params, "normals": job.normals_only,
                    "format": job.export_format, "convention": job.convention, "camera": job.camera_json,
                    "version": __version__}
        self.settings = json.dumps(settings, sort_keys=True, default=str)

    def key(self, path: Path) -> str | None:
        """A digest of everything the image's outputs depend on; None when an input file is unreadable."""
        digest = hashlib.sha256(self.settings.encode())
        extra = [self.job.normal_map, self.job.mask.replace("{stem}", path.stem) if self.job.mask else ""]
        for file in [str(path), *extra]:
            if not file:
                digest.update(b"-")
                continue
            part = _file_digest(file)
            if part is None:
                return None
            digest.update(part.encode())
        return digest.hexdigest()

    def _record_path(self, path: Path) -> Path:
        return self.folder / (hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:32] + ".json")

    def finished(self, path: Path) -> list[str] | None:
        """The file names of the image's finished outputs, or None when it must be generated (again)."""
        record_path = self._record_path(path)
        if not record_path.is_file():
            return None
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
            files = [str(f) for f in record["files"]]
            matches = record["key"] == self.key(path) and record["input"] == os.path.abspath(path)
        except (OSError, ValueError, KeyError, TypeError):
            return None  # a damaged record: generate again
        ok = matches and files and all(Path(f).name == f and (self.job.output / f).is_file() for f in files)
        return files if ok else None

    def record(self, path: Path, stem: str, files: list[str]) -> None:
        self.folder.mkdir(exist_ok=True)
        record = {"input": os.path.abspath(path), "key": self.key(path), "stem": stem, "files": files}
        write_bytes_atomic(self._record_path(path), json.dumps(record, indent=1).encode("utf-8"))


def _file_digest(file: str) -> str | None:
    """sha256 of a regular file's bytes; None when it is missing, not a regular file or unreadable."""
    if not os.path.isfile(file):
        return None
    digest = hashlib.sha256()
    try:
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()
