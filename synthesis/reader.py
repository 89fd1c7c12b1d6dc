"""Reading a synthesis dataset with numpy only: the manifest, and each split's samples as arrays.

    from synthesis.reader import load_manifest, iter_samples
    for s in iter_samples("OUT/dataset", "train"):
        s.occ_surface  # [64, 64, 64] bool, indexed [x, y, z]
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .shards import read_shard


@dataclass
class Sample:
    id: str
    meta: dict[str, Any]
    "The sample's JSON: generator, seed, split, licence, filter values, images, grid resolution."
    occ_surface: np.ndarray  # [R, R, R] bool: voxels the surface passes through (the sparse structure)
    occ_solid: np.ndarray  # [R, R, R] bool: voxel centres inside the mesh
    points: np.ndarray  # [N, 3] float32 surface samples in [-0.5, 0.5]^3, +Z up
    normals: np.ndarray  # [N, 3] float32 unit outward normals
    vertices: np.ndarray  # [V, 3] float32 the mesh
    faces: np.ndarray  # [F, 3] int32


def load_manifest(folder: Path | str) -> dict[str, Any]:
    return json.loads((Path(folder) / "manifest.json").read_text(encoding="utf-8"))


def iter_samples(folder: Path | str, split: str) -> Iterator[Sample]:
    folder = Path(folder)
    manifest = load_manifest(folder)
    for shard in manifest["splits"][split]["shards"]:
        for raw in read_shard(folder / shard):
            yield decode_sample(raw)


def decode_sample(raw: dict[str, bytes]) -> Sample:
    meta = json.loads(raw["json"])
    r = int(meta["resolution"])

    def array(suffix: str) -> np.ndarray:
        return np.load(io.BytesIO(raw[suffix]), allow_pickle=False)

    def bits(suffix: str) -> np.ndarray:
        return np.unpackbits(array(suffix), count=r**3).reshape(r, r, r).astype(bool)

    return Sample(meta["id"], meta, bits("occ_surface.npy"), bits("occ_solid.npy"), array("points.npy"),
                  array("normals.npy"), array("vertices.npy"), array("faces.npy"))
