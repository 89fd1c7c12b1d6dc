"""Procedural organic assets: blended lumps displaced by noise, carved grooves, ornaments and thin horns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import sdf
from ..mesh import Mesh
from .base import asset_rng, numbered_ids


@dataclass(frozen=True)
class OrganicGenerator:
    """Smooth unions of spheres and capsules, fractal-noise displacement and noise-contour carvings."""

    resolution: int = 96
    name: str = "organic"
    licence: str = "CC0-1.0 (procedural, made by this project's code)"

    def asset_ids(self, count: int) -> list[str]:
        return numbered_ids(self.name, count)

    def unavailable(self) -> str:
        return ""

    def generate(self, asset_id: str, seed: int) -> Mesh:
        rng = asset_rng(asset_id, seed)
        cell = 1.0 / self.resolution
        shape = _lumps(rng)
        noise = sdf.value_noise(rng, frequency=rng.uniform(4.0, 7.0), octaves=3)
        amplitude = rng.uniform(2.0, 3.5) * cell
        shape = sdf.displace(shape, lambda p: amplitude * noise(p))
        shape = _carvings(rng, shape, cell)
        shape = _ornaments(rng, shape, cell)
        shape = _horns(rng, shape, cell)
        return Mesh(*sdf.mesh_field(shape, self.resolution, lipschitz=2.5))


def _lumps(rng: np.random.Generator) -> sdf.Field:
    """A core sphere with two to five blended lumps and limbs."""
    shape = sdf.sphere((0, 0, 0), rng.uniform(0.16, 0.24))
    for _ in range(rng.integers(2, 6)):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        if rng.random() < 0.5:
            part = sdf.sphere(tuple(direction * rng.uniform(0.12, 0.2)), rng.uniform(0.08, 0.15))
        else:
            end = direction * rng.uniform(0.22, 0.32)
            part = sdf.capsule((0, 0, 0), tuple(end), rng.uniform(0.05, 0.09))
        shape = sdf.smooth_union(shape, part, k=0.06)
    return shape


def _carvings(rng: np.random.Generator, shape: sdf.Field, cell: float) -> sdf.Field:
    """Grooves along the zero contours of a second noise field, engraved into the shell."""
    pattern = sdf.value_noise(rng, frequency=rng.uniform(2.0, 3.5), octaves=1)
    width = 0.08
    # a band, not an exact distance: scaled so its slope stays near 1 (sdf.mesh_field relies on that)
    grooves: sdf.Field = lambda p: (np.abs(pattern(p)) - width) / 4.0  # noqa: E731
    return sdf.engrave(shape, grooves, 2.0 * cell)


def _ornaments(rng: np.random.Generator, shape: sdf.Field, cell: float) -> sdf.Field:
    """A ring of beads or a torus band around the waist."""
    z = rng.uniform(-0.08, 0.08)
    radius = rng.uniform(0.18, 0.24)
    if rng.random() < 0.5:
        beads = [sdf.sphere((radius * np.cos(a), radius * np.sin(a), z), 3.0 * cell)
                 for a in np.linspace(0, 2 * np.pi, int(rng.integers(8, 15)), endpoint=False)]
        return sdf.union(shape, *beads)
    return sdf.smooth_union(shape, sdf.torus((0, 0, z), radius, 2.5 * cell), k=0.01)


def _horns(rng: np.random.Generator, shape: sdf.Field, cell: float) -> sdf.Field:
    """One or two thin horns or tendrils."""
    for _ in range(rng.integers(1, 3)):
        direction = rng.normal(size=3) * [1, 1, 0.3] + [0, 0, 1.0]
        direction /= np.linalg.norm(direction)
        start = direction * 0.15
        end = direction * rng.uniform(0.36, 0.44)
        shape = sdf.smooth_union(shape, sdf.capsule(tuple(start), tuple(end), 1.8 * cell), k=0.02)
    return shape
