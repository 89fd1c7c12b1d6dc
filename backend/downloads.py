"""Download planning and running: which files each model needs, how big they are, their licence, then fetch.

``plan_download`` turns model or engine names (``hi3dgen`` = its three models; ``segmenter`` = rmbg) into a
``DownloadPlan``: per model the files the Hub lists for its download patterns, with sizes and checksums,
what is already complete in the target folder and what a ``.part`` holds. Models already present locally
need no network. ``run_plan`` checks the free disk space, then fetches every missing file with
``backend/fetch.py`` and checks that the folder now passes the normal weights lookup. Targets:
``<weights_dir>/<model>``, else ``weights.default_weights_dir()/<model>``.
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import hub
from .fetch import FetchError, FetchOptions, Progress, ProgressMeter, RemoteFile, check_free_space, fetch_file
from .settings import BackendSettings
from .weights import ModelSpec, default_weights_dir, find_local, missing_files, spec

GROUPS: dict[str, tuple[str, ...]] = {
    "hi3dgen": ("trellis-normal", "dinov2", "yoso-normal"),
    "segmenter": ("rmbg",),
}
"Names that stand for several models: an engine's weights, or the optional learned segmenter."


@dataclass(frozen=True)
class ModelPlan:
    """One model: where it goes and which of its files still have to come."""

    name: str
    repo_id: str
    licence: str
    folder: str
    files: tuple[RemoteFile, ...] = ()
    "The files still to fetch (complete ones are left out)."
    total: int = 0
    "Bytes of every file the model needs."
    present: int = 0
    "Bytes already complete in the folder (or the whole model, found elsewhere)."
    partial: int = 0
    "Bytes waiting in ``.part`` files from an earlier try."
    found_at: str = ""
    "Where the model already is when nothing needs fetching."

    @property
    def remaining(self) -> int:
        return max(0, self.total - self.present - self.partial)


@dataclass(frozen=True)
class DownloadPlan:
    root: str
    models: tuple[ModelPlan, ...] = field(default_factory=tuple)

    @property
    def remaining(self) -> int:
        """Bytes still to come over the network."""
        return sum(m.remaining for m in self.models)

    @property
    def to_fetch(self) -> int:
        """Bytes of the files still to fetch, the parts they resume from included."""
        return sum(f.size for m in self.models for f in m.files)

    def to_json(self) -> dict[str, Any]:
        return {"root": self.root, "remaining": self.remaining, "models": [
            {"name": m.name, "repo_id": m.repo_id, "licence": m.licence, "folder": m.folder,
             "files": len(m.files), "total": m.total, "present": m.present, "partial": m.partial,
             "remaining": m.remaining, "found_at": m.found_at} for m in self.models]}


def expand_names(names: list[str]) -> list[str]:
    """Model names with the group names replaced by their models, each once, in order (unknown: error)."""
    out: list[str] = []
    for name in names:
        for model in GROUPS.get(name, (name,)):
            spec(model)  # WeightsMissing naming the known models
            if model not in out:
                out.append(model)
    return out


def plan_download(names: list[str], settings: BackendSettings,
                  options: FetchOptions | None = None) -> DownloadPlan:
    """What downloading ``names`` involves; lists only the repositories of models not present locally."""
    root = Path(settings.weights_dir).expanduser() if settings.weights_dir else default_weights_dir()
    opts = hub.auth_options(options)
    return DownloadPlan(str(root), tuple(_plan_model(spec(n), root, settings, opts) for n in expand_names(names)))


def _plan_model(model: ModelSpec, root: Path, settings: BackendSettings, opts: FetchOptions) -> ModelPlan:
    found = find_local(model.name, settings)
    if found is not None:
        return ModelPlan(model.name, model.repo_id, model.licence, str(found), found_at=str(found))
    listing = hub.list_files(model.repo_id, options=opts)
    wanted = select_files(model, listing.files)
    folder = root / model.name
    todo, present, partial = [], 0, 0
    for remote in wanted:
        dest = folder / remote.path
        if dest.is_file() and not dest.is_symlink() and dest.stat().st_size == remote.size:
            present += remote.size
            continue
        part = dest.with_name(dest.name + ".part")
        if part.is_file() and not part.is_symlink():
            partial += min(part.stat().st_size, remote.size)
        todo.append(remote)
    licence = model.licence or listing.licence
    return ModelPlan(model.name, model.repo_id, licence, str(folder), tuple(todo),
                     sum(r.size for r in wanted), present, partial)


def select_files(model: ModelSpec, files: tuple[RemoteFile, ...]) -> list[RemoteFile]:
    """The listed files the model's download patterns match; ``FetchError`` if a required one is absent."""
    wanted = [f for f in files if any(fnmatch.fnmatchcase(f.path, pat) for pat in model.download)]
    absent = [pat for pat in model.required if not any(fnmatch.fnmatchcase(f.path, pat) for f in wanted)]
    if absent:
        raise FetchError(f"{model.repo_id} on the Hub has no file for {', '.join(absent)}.",
                         hint="The repository layout may have changed (or HF_ENDPOINT serves another "
                              "repository); report this.")
    return wanted


def run_plan(plan: DownloadPlan, progress: Callable[[Progress, str], None] | None = None,
             cancel: threading.Event | None = None, options: FetchOptions | None = None,
             disk_usage: Callable[[str], Any] | None = None, interval: float = 0.25) -> dict[str, Path]:
    """Fetch every file of ``plan``; returns each model's folder. ``progress(p, model)`` sees the bytes."""
    check_free_space(Path(plan.root), plan.remaining, disk_usage)
    current = [""]
    meter = ProgressMeter(plan.to_fetch, (lambda p: progress(p, current[0])) if progress else None, interval)
    opts = hub.auth_options(options)
    folders: dict[str, Path] = {}
    for model in plan.models:
        current[0] = model.name
        folder = Path(model.folder)
        for remote in model.files:
            fetch_file(remote, folder / remote.path, meter, cancel, opts)
            meter.add(0, remote.path, force=True)
        if model.files:
            _check_complete(spec(model.name), folder)
        folders[model.name] = folder
    return folders


def _check_complete(model: ModelSpec, folder: Path) -> None:
    missing = missing_files(folder, model)
    if missing:
        raise FetchError(f"After the download, {folder} still lacks {', '.join(missing)}.",
                         hint="The repository layout may have changed; report this.")
