"""What an asset generator is: a name, a licence, and one seeded mesh per asset id."""

from __future__ import annotations

import hashlib
from typing import Protocol

import numpy as np

from ..mesh import Mesh


class AssetGenerator(Protocol):
    """Makes one mesh per asset id, reproducibly: the same (id, seed) always gives the same mesh."""

    name: str
    "Short name, also the prefix of the asset ids it makes (letters, digits, underscores)."
    licence: str
    "Licence of what it makes, for the data card."

    def asset_ids(self, count: int) -> list[str]:
        """The ids of the first ``count`` assets (fewer when the source is finite, e.g. a folder)."""
        ...

    def unavailable(self) -> str:
        """Empty when the generator can run; otherwise a one-line note saying why it is skipped."""
        ...

    def generate(self, asset_id: str, seed: int) -> Mesh:
        """The mesh for ``asset_id`` (any placement and scale: the pipeline normalises it)."""
        ...


def asset_rng(asset_id: str, seed: int) -> np.random.Generator:
    """A generator private to one asset: independent of the order or the process assets run in."""
    digest = hashlib.sha256(f"{seed}:{asset_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


def numbered_ids(name: str, count: int) -> list[str]:
    return [f"{name}-{i:05d}" for i in range(count)]
