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
    views: list[View]
    "The conditioning views (empty when the run made none)."


@dataclass
class View:
    normal: np.ndarray  # [H, W, 3] float32 camera-space unit normals (+X right, +Y up, +Z to the viewer)
    normal_png: bytes
    "The stored image, (n + 1) / 2 as RGB8: what NiRNE outputs and the engines read."
    mask: np.ndarray  # [H, W] bool
    depth: np.ndarray  # [H, W] float32, 0 on the background
    camera: dict[str, Any]
    "backend/camera.py's Camera.to_dict() (read it back with Camera.from_dict): extrinsics, size, fov, Blender, glTF."
    rgb: np.ndarray | None = None  # [H, W, 3] uint8 Blender render, when the run made them


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

    cameras = json.loads(raw["cameras.json"]) if "cameras.json" in raw else []
    views = [_view(raw, name, cameras[k]) for k, name in enumerate(meta.get("images", []))]
    return Sample(meta["id"], meta, bits("occ_surface.npy"), bits("occ_solid.npy"), array("points.npy"),
                  array("normals.npy"), array("vertices.npy"), array("faces.npy"), views)


def _view(raw: dict[str, bytes], name: str, camera: dict[str, Any]) -> View:
    from PIL import Image

    stem = name.removesuffix(".normal.png")
    rgb = np.asarray(Image.open(io.BytesIO(raw[name])).convert("RGB"), np.float32) / 255.0
    mask = np.asarray(Image.open(io.BytesIO(raw[f"{stem}.mask.png"]))) > 127
    normal = (rgb * 2.0 - 1.0) * mask[..., None]
    depth = np.load(io.BytesIO(raw[f"{stem}.depth.npy"]), allow_pickle=False)
    rgb = raw.get(f"{stem}.rgb.png")
    colour = None if rgb is None else np.asarray(Image.open(io.BytesIO(rgb)).convert("RGB"))
    return View(normal, raw[name], mask, depth, camera, colour)
