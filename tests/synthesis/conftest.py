"""Small meshes and tiny run configs shared by the synthesis tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import tomllib

from synthesis import sdf
from synthesis.config import RunConfig, config_from_dict
from synthesis.mesh import Mesh


def icosphere(radius: float = 0.4, subdivisions: int = 4, centre: tuple[float, float, float] = (0, 0, 0)) -> Mesh:
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return Mesh(s.vertices + np.asarray(centre), s.faces)


def box(size: tuple[float, float, float], centre: tuple[float, float, float] = (0, 0, 0)) -> Mesh:
    import trimesh

    b = trimesh.creation.box(size)
    return Mesh(b.vertices + np.asarray(centre), b.faces)


def wireframe_cube(half: float = 0.4, beam: float = 0.012, resolution: int = 96) -> Mesh:
    """The 12 edges of a cube as thin beams: almost all of it thinner than two 64^3 voxels."""
    beams = []
    for axis in range(3):
        for a in (-half, half):
            for b in (-half, half):
                centre, size = [a, b], [beam, beam]
                centre.insert(axis, 0.0)
                size.insert(axis, half + beam)
                beams.append(sdf.box(tuple(centre), tuple(size)))  # type: ignore[arg-type]
    return Mesh(*sdf.mesh_field(sdf.union(*beams), resolution))


TINY_TOML = """
name = "test"
seed = 7
retries = 0

[[generators]]
kind = "hard_surface"
count = 3
resolution = 48

[[generators]]
kind = "organic"
count = 3
resolution = 48

[filters]
detail_samples = 4000

[labels]
resolution = 32
surface_points = 256

[views]
count = 2
resolution = 64

[dataset]
shard_size = 2
val_fraction = 0.2
test_fraction = 0.2
"""
"Six small assets, coarse labels: a whole run in seconds."


def tiny_config(**overrides: Any) -> RunConfig:
    raw = tomllib.loads(TINY_TOML)
    raw.update(overrides)
    return config_from_dict(raw)


@pytest.fixture
def sphere() -> Mesh:
    return icosphere()
