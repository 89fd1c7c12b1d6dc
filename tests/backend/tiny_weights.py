"""Tiny random hi3dgen weights in the release layout, as the tests' weights folder holds them."""

from __future__ import annotations

from pathlib import Path

from backend.models.testing import write_dinov2_folder, write_release_folder

from .test_nirne import write_release as write_yoso_folder


def write_tiny_weights(root: Path) -> Path:
    """``root/{trellis-normal,dinov2,yoso-normal}``: every model the hi3dgen engine loads; returns ``root``."""
    root = Path(root)
    write_release_folder(root / "trellis-normal")
    write_dinov2_folder(root / "dinov2")
    write_yoso_folder(root / "yoso-normal")
    return root
