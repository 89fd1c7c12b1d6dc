"""A synthesis run's configuration: dataclasses read from a TOML file, each field checked."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import tomllib

from backend.errors import BadInput

GENERATOR_KINDS = ("hard_surface", "organic", "image_to_3d")


@dataclass(frozen=True)
class GeneratorConfig:
    kind: str
    "One of GENERATOR_KINDS."
    count: int
    "How many assets this generator makes (image_to_3d: at most this many images of the folder)."
    resolution: int = 96
    "Marching-cubes grid per side (procedural kinds)."
    images: str = ""
    "image_to_3d only: the folder of images."


@dataclass(frozen=True)
class FilterConfig:
    """Thresholds of the quality filters (synthesis/filters/); an asset failing any one is rejected."""

    max_open_edges: int = 0
    "Edges not shared by exactly two faces, or shared with inconsistent winding."
    max_degenerate_faces: int = 0
    min_face_area: float = 1e-12
    "A face with less area (unit-cube units^2) or a repeated corner is degenerate."
    max_self_intersections: int = 0
    "Pairs of faces sharing no vertex whose interiors cross."
    min_detail_score: float = 0.012
    "Mean normal dispersion over several neighbourhood radii; a sphere scores ~0.001, a bevelled box ~0.03."
    detail_radii: tuple[float, ...] = (0.015, 0.03, 0.06)
    detail_samples: int = 20000
    max_thin_fraction: float = 0.35
    "Share of the 64^3 solid that a one-voxel morphological opening removes (parts under ~2 voxels thick)."
    thin_resolution: int = 64
    min_aspect: float = 0.05
    "Shortest over longest bounding-box side."
    max_components: int = 12
    min_faces: int = 200
    max_faces: int = 400_000


@dataclass(frozen=True)
class LabelConfig:
    resolution: int = 64
    "Occupancy grid per side (the structure decoder's 64^3)."
    surface_points: int = 8192
    "Surface samples (points and normals) per asset."


@dataclass(frozen=True)
class ViewConfig:
    """Conditioning views: camera-space normal maps, masks and depth rasterised from the mesh (views.py)."""

    count: int = 4
    "Views per asset (0: none), evenly spread in azimuth around the asset at random elevations."
    resolution: int = 512
    fov_y_deg: float = 40.0
    "Full field of view in degrees (the views are square: vertical = horizontal)."
    normals: str = "smooth"
    "smooth: interpolated area-weighted vertex normals; flat: each face's normal (views.NORMAL_MODES)."
    elevation_deg: tuple[float, float] = (-10.0, 40.0)
    "Range of the cameras' random elevations above the asset's equator."
    margin: float = 1.1
    "The asset's bounding sphere times this fills the view (each asset is framed tightly, as cropped inputs are)."


@dataclass(frozen=True)
class RenderConfig:
    """RGB renders through the views' cameras by Blender (Cycles, CPU), in a bpy subprocess per asset."""

    rgb: bool = False
    samples: int = 16
    "Cycles samples per pixel."
    blender_python: str = ""
    "The bpy interpreter; empty: $HI3DGEN_BLENDER_PYTHON, else the repository's .venv-blender/bin/python."


@dataclass(frozen=True)
class DatasetConfig:
    shard_size: int = 64
    "Assets per WebDataset shard."
    val_fraction: float = 0.1
    test_fraction: float = 0.1


@dataclass(frozen=True)
class RunConfig:
    name: str
    seed: int
    generators: tuple[GeneratorConfig, ...]
    extent: float = 0.9
    "Every mesh is centred and scaled so its longest bounding-box side is this (<= 1: the unit cube)."
    filters: FilterConfig = field(default_factory=FilterConfig)
    labels: LabelConfig = field(default_factory=LabelConfig)
    views: ViewConfig = field(default_factory=ViewConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    workers: int = 1
    "Local worker processes per stage (1: run in this process)."
    retries: int = 1
    "Extra attempts for a task that raised, before its asset is recorded as failed."

    def digest(self) -> str:
        """A hash of everything that changes the output (not workers): resuming needs the same digest."""
        data = asdict(self)
        data.pop("workers")
        data["render"].pop("blender_python")
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def load_config(path: Path | str) -> RunConfig:
    """Read and check a TOML run configuration; ``BadInput`` names the bad key and what to write."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"The config {path} is not a file.", hint="Pass a TOML file, e.g. synthesis/configs/tiny.toml.")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"The config {path} is not valid TOML: {exc}.", hint="Fix the file's syntax.") from None
    return config_from_dict(raw)


def config_from_dict(raw: dict[str, Any]) -> RunConfig:
    gens = raw.get("generators")
    if not isinstance(gens, list) or not gens:
        raise BadInput("The config has no [[generators]] tables.", hint="Add at least one, with kind and count.")
    values = _build(RunConfig, {**raw, "generators": tuple(_build(GeneratorConfig, g, "generators") for g in gens),
                                "filters": _build(FilterConfig, raw.get("filters", {}), "filters"),
                                "labels": _build(LabelConfig, raw.get("labels", {}), "labels"),
                                "views": _build(ViewConfig, raw.get("views", {}), "views"),
                                "render": _build(RenderConfig, raw.get("render", {}), "render"),
                                "dataset": _build(DatasetConfig, raw.get("dataset", {}), "dataset")}, "")
    _check(values)
    return values


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise BadInput(f"[{where}] must be a table.", hint="See synthesis/configs/tiny.toml.")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise BadInput(f"Unknown config key(s) {unknown} in [{where or 'top level'}].",
                       hint=f"Known keys: {', '.join(known)}.")
    out = {}
    for name, value in raw.items():
        if isinstance(value, list) and name != "generators":
            value = tuple(value)
        out[name] = value
    try:
        return cls(**out)
    except TypeError as exc:
        raise BadInput(f"[{where or 'top level'}] is incomplete: {exc}.",
                       hint="See synthesis/configs/tiny.toml.") from None


def _check(cfg: RunConfig) -> None:
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise BadInput(f"Bad config value: {what}.", hint="See synthesis/configs/tiny.toml for valid values.")

    need(isinstance(cfg.name, str) and cfg.name.replace("_", "").replace("-", "").isalnum(),
         "name must be letters, digits, - or _")
    need(_is_int(cfg.seed) and 0 <= cfg.seed < 2**32, "seed must be a whole number in [0, 2^32)")
    need(_is_int(cfg.workers) and 1 <= cfg.workers <= 256, "workers must be 1..256")
    need(_is_int(cfg.retries) and 0 <= cfg.retries <= 10, "retries must be 0..10")
    need(isinstance(cfg.extent, float) and 0.1 <= cfg.extent <= 1.0, "extent must be a number in [0.1, 1]")
    for g in cfg.generators:
        need(g.kind in GENERATOR_KINDS, f"generator kind {g.kind!r} is not one of {GENERATOR_KINDS}")
        need(_is_int(g.count) and 0 <= g.count <= 10_000_000, "generator count must be 0..1e7")
        need(_is_int(g.resolution) and 16 <= g.resolution <= 512, "generator resolution must be 16..512")
        need(g.kind != "image_to_3d" or bool(g.images), "an image_to_3d generator needs images = FOLDER")
    need(len({g.kind for g in cfg.generators}) == len(cfg.generators), "each generator kind at most once")
    lab, ds, views = cfg.labels, cfg.dataset, cfg.views
    need(_is_int(views.count) and 0 <= views.count <= 64, "views.count must be 0..64")
    need(isinstance(cfg.render.rgb, bool) and (not cfg.render.rgb or views.count > 0),
         "render.rgb must be true or false, and needs views.count > 0 (it renders through the views' cameras)")
    need(_is_int(cfg.render.samples) and 1 <= cfg.render.samples <= 4096, "render.samples must be 1..4096")
    need(isinstance(cfg.render.blender_python, str), "render.blender_python must be a path")
    need(_is_int(views.resolution) and 16 <= views.resolution <= 4096, "views.resolution must be 16..4096")
    need(isinstance(views.fov_y_deg, float) and 5.0 <= views.fov_y_deg <= 120.0, "views.fov_y_deg must be 5..120")
    need(views.normals in ("smooth", "flat"), "views.normals must be \"smooth\" or \"flat\"")
    need(len(views.elevation_deg) == 2 and all(_is_number(e) and -89.0 <= e <= 89.0 for e in views.elevation_deg)
         and views.elevation_deg[0] <= views.elevation_deg[1], "views.elevation_deg must be [low, high] in -89..89")
    need(isinstance(views.margin, float) and 1.0 <= views.margin <= 4.0, "views.margin must be 1..4")
    need(_is_int(lab.resolution) and 8 <= lab.resolution <= 256, "labels.resolution must be 8..256")
    need(_is_int(lab.surface_points) and 1 <= lab.surface_points <= 10_000_000, "labels.surface_points >= 1")
    need(_is_int(ds.shard_size) and ds.shard_size >= 1, "dataset.shard_size must be >= 1")
    need(ds.val_fraction >= 0 and ds.test_fraction >= 0 and ds.val_fraction + ds.test_fraction < 1,
         "dataset val_fraction + test_fraction must be in [0, 1)")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
