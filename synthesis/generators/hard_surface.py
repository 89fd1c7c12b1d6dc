"""Procedural hard-surface assets: a bevelled body, CSG parts, panel lines, screws, vents and thin parts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import sdf
from ..mesh import Mesh
from .base import asset_rng, numbered_ids


@dataclass(frozen=True)
class HardSurfaceGenerator:
    """CSG of boxes and cylinders on a signed distance field, meshed by marching cubes (always closed)."""

    resolution: int = 96
    "Marching-cubes grid per side; the finest detail (panel line width) is about two cells at 96."
    name: str = "hard_surface"
    licence: str = "CC0-1.0 (procedural, made by this project's code)"

    def asset_ids(self, count: int) -> list[str]:
        return numbered_ids(self.name, count)

    def unavailable(self) -> str:
        return ""

    def generate(self, asset_id: str, seed: int) -> Mesh:
        rng = asset_rng(asset_id, seed)
        cell = 1.0 / self.resolution
        half = rng.uniform([0.22, 0.16, 0.12], [0.4, 0.34, 0.3])  # body half-extents
        body = _body(rng, half, cell)
        body = _csg_parts(rng, body, half)
        body = _panel_lines(rng, body, half, cell)
        body = _vents(rng, body, half, cell)
        body = _screws(rng, body, half, cell)
        body = _thin_parts(rng, body, half, cell)
        return Mesh(*sdf.mesh_field(body, self.resolution))


def _body(rng: np.random.Generator, half: np.ndarray, cell: float) -> sdf.Field:
    bevel = rng.uniform(2.0, 5.0) * cell
    if rng.random() < 0.65:
        return sdf.box((0, 0, 0), tuple(half), bevel=bevel)
    radius = float(min(half[0], half[1]))
    return sdf.cylinder((0, 0, 0), radius, float(half[2]), bevel=bevel)


def _csg_parts(rng: np.random.Generator, body: sdf.Field, half: np.ndarray) -> sdf.Field:
    """One to three added blocks or bosses and one subtracted notch or bore."""
    added = []
    for _ in range(rng.integers(1, 4)):
        centre = rng.uniform(-half, half) * [1, 1, 0] + [0, 0, half[2]]
        size = rng.uniform(0.25, 0.5, 3) * half * [1, 1, 0.6]
        if rng.random() < 0.5:
            added.append(sdf.box(tuple(centre), tuple(size), bevel=0.01))
        else:
            added.append(sdf.cylinder(tuple(centre), float(size[:2].min()), float(size[2]), bevel=0.008))
    body = sdf.union(body, *added)
    if rng.random() < 0.5:
        corner = np.sign(rng.uniform(-1, 1, 3)) * half
        notch = sdf.box(tuple(corner), tuple(half * rng.uniform(0.25, 0.45, 3)))
    else:
        axis = str(rng.choice(["x", "y"]))
        notch = sdf.cylinder((0, 0, 0), float(half.min() * rng.uniform(0.25, 0.45)), 1.0,
                             rotation=sdf.rotation_matrix("y" if axis == "x" else "x", np.pi / 2))
    return sdf.subtract(body, notch)


def _panel_lines(rng: np.random.Generator, body: sdf.Field, half: np.ndarray, cell: float) -> sdf.Field:
    """Two to four grooves, each a thin slab engraved into the outer shell only."""
    grooves = []
    for _ in range(rng.integers(2, 5)):
        dim = int(rng.integers(0, 3))
        extent = np.full(3, 1.0)
        extent[dim] = 1.2 * cell
        centre = np.zeros(3)
        centre[dim] = rng.uniform(-0.7, 0.7) * half[dim]
        grooves.append(sdf.box(tuple(centre), tuple(extent)))
    return sdf.engrave(body, sdf.union(*grooves), 2.0 * cell)


def _vents(rng: np.random.Generator, body: sdf.Field, half: np.ndarray, cell: float) -> sdf.Field:
    """A row of slots on the front (-Y) face."""
    count = int(rng.integers(3, 7))
    width = 0.5 * half[0]
    z0 = rng.uniform(-0.5, 0.1) * half[2]
    pitch = 4.0 * cell
    slots = [sdf.box((0.0, -half[1], z0 + i * pitch), (width, 0.05, 1.2 * cell), bevel=0.5 * cell)
             for i in range(count)]
    return sdf.engrave(body, sdf.union(*slots), 3.0 * cell)


def _screws(rng: np.random.Generator, body: sdf.Field, half: np.ndarray, cell: float) -> sdf.Field:
    """Four screw heads near the corners of the top face, each with an engraved slot."""
    inset = rng.uniform(0.6, 0.8)
    radius = rng.uniform(2.0, 3.0) * cell
    heads, slots = [], []
    for sx in (-1, 1):
        for sy in (-1, 1):
            c = (sx * inset * half[0] * 0.7, sy * inset * half[1] * 0.7, half[2])
            heads.append(sdf.cylinder(c, radius, 1.5 * cell, bevel=0.5 * cell))
            slots.append(sdf.box((c[0], c[1], c[2] + 1.5 * cell), (radius, 0.6 * cell, 1.2 * cell)))
    return sdf.subtract(sdf.union(body, *heads), *slots)


def _thin_parts(rng: np.random.Generator, body: sdf.Field, half: np.ndarray, cell: float) -> sdf.Field:
    """An antenna (thin rod with a ball) or a thin fin on the top."""
    x, y = rng.uniform(-0.6, 0.6, 2) * half[:2]
    top = half[2] * 0.9
    if rng.random() < 0.5:
        height = rng.uniform(0.06, 0.12)
        rod = sdf.capsule((x, y, top), (x, y, top + height), 1.6 * cell)
        return sdf.union(body, rod, sdf.sphere((x, y, top + height), 3.0 * cell))
    fin = sdf.box((x, y, top + 0.04), (0.6 * half[0], 1.6 * cell, 0.05), bevel=0.5 * cell)
    return sdf.union(body, fin)
