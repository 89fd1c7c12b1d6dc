"""Asset generators behind one interface (``base.AssetGenerator``), built from a run's config."""

from __future__ import annotations

from backend.settings import BackendSettings

from ..config import GeneratorConfig
from .base import AssetGenerator
from .hard_surface import HardSurfaceGenerator
from .image_to_3d import ImageTo3DGenerator
from .organic import OrganicGenerator

__all__ = ["AssetGenerator", "make_generator"]


def make_generator(cfg: GeneratorConfig, settings: BackendSettings | None = None) -> AssetGenerator:
    if cfg.kind == "hard_surface":
        return HardSurfaceGenerator(cfg.resolution)
    if cfg.kind == "organic":
        return OrganicGenerator(cfg.resolution)
    if cfg.kind == "image_to_3d":
        return ImageTo3DGenerator(cfg.images, settings or BackendSettings.from_env())
    raise ValueError(f"Unknown generator kind {cfg.kind!r}.")
