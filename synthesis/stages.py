"""The per-asset stages as picklable task objects: generate, filter, labels. Each writes one file atomically.

A task's output file is its completion mark; a task whose retries all failed writes a failure record
instead, so the asset counts as rejected (with the error as the reason) rather than being retried forever.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from backend.atomic import write_atomic, write_bytes_atomic

from .config import RunConfig
from .filters import run_filters
from .generators import AssetGenerator
from .generators.base import asset_rng
from .labels import make_labels
from .layout import Layout
from .mesh import load_mesh, normalise, save_mesh

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")


@dataclass
class GenerateTask:
    layout: Layout
    config: RunConfig
    generators: dict[str, AssetGenerator]
    "Generator name (the id's prefix) -> generator."

    def __call__(self, asset_id: str) -> None:
        generator = self.generators[asset_id.split("-", 1)[0]]
        mesh = normalise(generator.generate(asset_id, self.config.seed), self.config.extent)
        save_mesh(mesh, self.layout.mesh(asset_id))

    def done(self, asset_id: str) -> bool:
        return self.layout.mesh(asset_id).is_file() or self.layout.failure("generate", asset_id).is_file()


@dataclass
class FilterTask:
    layout: Layout
    config: RunConfig

    def __call__(self, asset_id: str) -> None:
        if not self.layout.mesh(asset_id).is_file():
            write_json(self.layout.verdict(asset_id), rejected(asset_id, "generate", self.layout))
            return
        results = run_filters(load_mesh(self.layout.mesh(asset_id)), self.config.filters)
        failed = [r for r in results if not r.passed]
        verdict = {"id": asset_id, "passed": not failed, "rejected_by": [r.name for r in failed],
                   "reasons": {r.name: r.reason for r in failed}, "values": {r.name: r.value for r in results}}
        write_json(self.layout.verdict(asset_id), verdict)

    def done(self, asset_id: str) -> bool:
        return self.layout.verdict(asset_id).is_file() or self.layout.failure("filter", asset_id).is_file()


@dataclass
class LabelTask:
    layout: Layout
    config: RunConfig

    def __call__(self, asset_id: str) -> None:
        cfg = self.config.labels
        mesh = load_mesh(self.layout.mesh(asset_id))
        labels = make_labels(mesh, cfg.resolution, cfg.surface_points, asset_rng(asset_id, self.config.seed + 1))
        arrays = {"occ_surface": np.packbits(labels.surface.ravel()), "occ_solid": np.packbits(labels.solid.ravel()),
                  "points": labels.points, "normals": labels.normals}

        def write(temp: Path) -> None:
            with open(temp, "wb") as f:
                np.savez(f, **arrays)

        write_atomic(self.layout.labels(asset_id), write)

    def done(self, asset_id: str) -> bool:
        return self.layout.labels(asset_id).is_file() or self.layout.failure("labels", asset_id).is_file()


@dataclass
class ViewTask:
    """Camera-space normal maps, masks and depth of ``views.count`` orbit cameras, with the cameras (views.py)."""

    layout: Layout
    config: RunConfig

    def __call__(self, asset_id: str) -> None:
        from .views import bounding_radius, encode_normals, orbit_cameras, render_views

        cfg = self.config.views
        mesh = load_mesh(self.layout.mesh(asset_id))
        cameras = orbit_cameras(asset_rng(asset_id, self.config.seed + 2), cfg.count, cfg.resolution, cfg.fov_y_deg,
                                cfg.elevation_deg, cfg.margin * bounding_radius(mesh))
        views = _one_thread(lambda: render_views(mesh, cameras, cfg.normals))
        cams = json.dumps([c.to_dict() for c in cameras], sort_keys=True).encode()
        arrays = {"normals": encode_normals(views.normals, views.mask),  # [K, H, W, 3] uint8
                  "mask": views.mask, "depth": views.depth, "cameras": np.frombuffer(cams, np.uint8)}

        def write(temp: Path) -> None:
            with open(temp, "wb") as f:
                np.savez(f, **arrays)

        write_atomic(self.layout.views(asset_id), write)

    def done(self, asset_id: str) -> bool:
        return self.layout.views(asset_id).is_file() or self.layout.failure("views", asset_id).is_file()


@dataclass
class RgbTask:
    """Blender RGB renders through the asset's view cameras (synthesis/blender/render_rgb.py, a subprocess)."""

    layout: Layout
    config: RunConfig
    python: str
    "The bpy interpreter (blender_python())."

    def __call__(self, asset_id: str) -> None:
        command = [self.python, "-m", "synthesis.blender.render_rgb", "--mesh", str(self.layout.mesh(asset_id)),
                   "--views", str(self.layout.views(asset_id)), "--out", str(self.layout.rgb(asset_id)),
                   "--seed", str(int(asset_rng(asset_id, self.config.seed + 3).integers(2**31))),
                   "--samples", str(self.config.render.samples)]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"Blender render failed ({done.returncode}): {tail[0]}")

    def done(self, asset_id: str) -> bool:
        return self.layout.rgb(asset_id).is_file() or self.layout.failure("rgb", asset_id).is_file()


def _one_thread(work: Callable[[], T]) -> T:
    """Run ``work`` with one torch thread: the run's parallelism is its workers (one task per core), and idle
    intra-op threads spinning on a busy machine cost ten times the CPU time of the work itself."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return work()
    finally:
        torch.set_num_threads(before)


def blender_python(config: RunConfig) -> tuple[str, str]:
    """(the bpy interpreter, "") or ("", a note saying why RGB renders are skipped)."""
    path = config.render.blender_python or os.environ.get("HI3DGEN_BLENDER_PYTHON", "") or \
        str(REPO / ".venv-blender" / "bin" / "python")
    if not (Path(path).is_file() and os.access(path, os.X_OK)):
        return "", (f"rgb renders skipped: no bpy interpreter at {path}; run `make venvs` or set "
                    "render.blender_python / HI3DGEN_BLENDER_PYTHON.")
    return path, ""


def rejected(asset_id: str, stage: str, layout: Layout) -> dict[str, object]:
    """The verdict of an asset whose ``stage`` failed for good (the failure record holds the error)."""
    path = layout.failure(stage, asset_id)
    error = json.loads(path.read_text(encoding="utf-8"))["error"] if path.is_file() else "no output"
    return {"id": asset_id, "passed": False, "rejected_by": [f"{stage}_failed"],
            "reasons": {f"{stage}_failed": error}, "values": {}}


def record_failures(layout: Layout, stage: str, failed: dict[str, str]) -> None:
    for asset_id, error in sorted(failed.items()):
        write_json(layout.failure(stage, asset_id), {"id": asset_id, "stage": stage, "error": error})


def write_json(path: Path, value: object) -> None:
    write_bytes_atomic(path, (json.dumps(value, sort_keys=True, indent=1) + "\n").encode())


def config_record(config: RunConfig) -> dict[str, object]:
    return {"config_digest": config.digest(), "config": asdict(config)}
