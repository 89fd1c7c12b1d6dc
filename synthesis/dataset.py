"""The dataset stage: accepted assets -> split -> WebDataset shards, then the manifest, index and data card."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backend.atomic import write_bytes_atomic

from .config import RunConfig
from .layout import Layout
from .shards import json_bytes, npy_bytes, write_shard
from .stages import rejected, write_json

FORMAT = "hi3dgen-synthesis/1"
SPLITS = ("train", "val", "test")
MEMBERS = {
    "json": "metadata: id, generator, seed, split, licence, resolution, filter values, images",
    "occ_surface.npy": "uint8 [ceil(R^3/8)]: np.packbits of the [R, R, R] bool grid of voxels the surface "
                       "passes through (C order, index [x, y, z]); the sparse-structure target",
    "occ_solid.npy": "uint8 [ceil(R^3/8)]: np.packbits of the [R, R, R] bool grid of voxel centres inside",
    "points.npy": "float32 [N, 3]: surface samples, area-uniform",
    "normals.npy": "float32 [N, 3]: unit outward normals at the samples",
    "vertices.npy": "float32 [V, 3]: the mesh, in [-0.5, 0.5]^3, Blender frame (+Z up, facing -Y)",
    "faces.npy": "int32 [F, 3]: triangles, counter-clockwise seen from outside",
    "cameras.json": "list of K cameras, each backend/camera.py's Camera.to_dict(): world->camera rotation and "
                    "translation, size, fov (radians, 0 = orthographic), and the Blender and glTF equivalents",
    "viewKKK.normal.png": "RGB8 camera-space normals (+X right, +Y up, +Z to the viewer) as (n + 1) / 2; black "
                          "background",
    "viewKKK.mask.png": "L8 foreground mask (255 inside)",
    "viewKKK.rgb.png": "RGB8 Blender (Cycles) render through the view's camera: random material, key and fill "
                       "light about the camera, paper, grey or muted background (only when render.rgb)",
    "viewKKK.depth.npy": "float32 [H, W] distance along the view axis, 0 on the background",
}


@dataclass
class ShardTask:
    """Writes one shard (keyed by its file name) from the labelled assets it holds."""

    layout: Layout
    config: RunConfig
    plan: dict[str, list[str]]
    "shard file name -> asset ids."
    licences: dict[str, str]
    "generator name -> licence."
    rgb: bool = False
    "Whether the run made Blender RGB renders (work/rgb)."

    def __call__(self, shard: str) -> None:
        write_shard(self.layout.dataset / shard, [self.sample(a, shard.split("-")[0]) for a in self.plan[shard]])

    def done(self, shard: str) -> bool:
        return (self.layout.dataset / shard).is_file()

    def sample(self, asset_id: str, split: str) -> dict[str, bytes]:
        from .mesh import load_mesh

        verdict = json.loads(self.layout.verdict(asset_id).read_text(encoding="utf-8"))
        mesh = load_mesh(self.layout.mesh(asset_id))
        generator = asset_id.split("-", 1)[0]
        meta = {"id": asset_id, "generator": generator, "seed": self.config.seed, "split": split,
                "licence": self.licences[generator], "resolution": self.config.labels.resolution,
                "filters": verdict["values"], "images": [], "format": FORMAT}
        with np.load(self.layout.labels(asset_id), allow_pickle=False) as labels:
            arrays = {f"{k}.npy": npy_bytes(labels[k]) for k in ("occ_surface", "occ_solid", "points", "normals")}
        if self.config.views.count:
            views = view_members(self.layout.views(asset_id))
            meta["images"] = sorted(k for k in views if k.endswith(".normal.png"))
            meta["cameras"] = "cameras.json"
            arrays.update(views)
        if self.rgb:
            with np.load(self.layout.rgb(asset_id), allow_pickle=False) as rgb:
                for k in range(len(rgb["rgb"])):
                    arrays[f"view{k:03d}.rgb.png"] = png_bytes(rgb["rgb"][k])
            meta["rgb"] = sorted(k for k in arrays if k.endswith(".rgb.png"))
        return {"__key__": asset_id.encode(), "json": json_bytes(meta), **arrays,
                "vertices.npy": npy_bytes(mesh.vertices), "faces.npy": npy_bytes(mesh.faces.astype(np.int32))}


def view_members(path: Path) -> dict[str, bytes]:
    """The tar members of one asset's views: PNG normal maps and masks, depth arrays and the cameras."""
    out: dict[str, bytes] = {}
    with np.load(path, allow_pickle=False) as views:
        out["cameras.json"] = json_bytes(json.loads(views["cameras"].tobytes()))
        for k in range(len(views["normals"])):
            out[f"view{k:03d}.normal.png"] = png_bytes(views["normals"][k])
            out[f"view{k:03d}.mask.png"] = png_bytes(views["mask"][k].astype(np.uint8) * 255)
            out[f"view{k:03d}.depth.npy"] = npy_bytes(views["depth"][k])
    return out


def png_bytes(image: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def split_of(asset_id: str, config: RunConfig) -> str:
    """A split fixed by the id and the run's seed alone (adding assets never moves one to another split)."""
    u = int.from_bytes(hashlib.sha256(f"split:{config.seed}:{asset_id}".encode()).digest()[:8], "little") / 2**64
    ds = config.dataset
    return "val" if u < ds.val_fraction else "test" if u < ds.val_fraction + ds.test_fraction else "train"


def plan_shards(accepted: list[str], config: RunConfig) -> dict[str, list[str]]:
    """shard file name -> ids: per split, sorted ids in chunks of shard_size."""
    plan: dict[str, list[str]] = {}
    for split in SPLITS:
        ids = sorted(a for a in accepted if split_of(a, config) == split)
        size = config.dataset.shard_size
        for n, start in enumerate(range(0, len(ids), size)):
            plan[f"{split}-{n:06d}.tar"] = ids[start:start + size]
    return plan


def verdicts(layout: Layout, ids: list[str], required: list[str]) -> dict[str, dict[str, Any]]:
    """The filter verdict of every id; a ``required`` stage without output turns a pass into a rejection."""
    out = {}
    for asset_id in ids:
        path = layout.verdict(asset_id)
        if path.is_file():
            verdict = json.loads(path.read_text(encoding="utf-8"))
        else:
            verdict = rejected(asset_id, "filter", layout)
        for stage in required:
            if verdict["passed"] and not getattr(layout, stage)(asset_id).is_file():
                verdict = rejected(asset_id, stage, layout)
        out[asset_id] = verdict
    return out


def write_summary(layout: Layout, config: RunConfig, plan: dict[str, list[str]], judged: dict[str, dict[str, Any]],
                  licences: dict[str, str], notes: list[str]) -> dict[str, Any]:
    """manifest.json, index.jsonl, rejections.jsonl and DATACARD.md (rewritten whole: same inputs, same bytes)."""
    folder = layout.dataset
    index = [{"id": a, "split": shard.split("-")[0], "shard": shard} for shard, ids in plan.items() for a in ids]
    rejects = [{"id": a, "generator": a.split("-", 1)[0], "rejected_by": v["rejected_by"], "reasons": v["reasons"]}
               for a, v in sorted(judged.items()) if not v["passed"]]
    manifest = _manifest(config, plan, judged, rejects, licences, notes)
    write_bytes_atomic(folder / "index.jsonl", _jsonl(sorted(index, key=lambda r: r["id"])))
    write_bytes_atomic(folder / "rejections.jsonl", _jsonl(rejects))
    write_json(folder / "manifest.json", manifest)
    write_bytes_atomic(folder / "DATACARD.md", datacard(manifest).encode())
    return manifest


def _manifest(config: RunConfig, plan: dict[str, list[str]], judged: dict[str, dict[str, Any]],
              rejects: list[dict[str, Any]], licences: dict[str, str], notes: list[str]) -> dict[str, Any]:
    splits = {s: {"shards": [k for k in plan if k.startswith(f"{s}-")],
                  "count": sum(len(v) for k, v in plan.items() if k.startswith(f"{s}-"))} for s in SPLITS}
    by_generator = Counter(a.split("-", 1)[0] for a in judged)
    kept = Counter(a.split("-", 1)[0] for ids in plan.values() for a in ids)
    reasons = Counter(name for r in rejects for name in r["rejected_by"])
    return {"format": FORMAT, "name": config.name, "config_digest": config.digest(), "seed": config.seed,
            "resolution": config.labels.resolution, "surface_points": config.labels.surface_points,
            "views": {"count": config.views.count, "resolution": config.views.resolution,
                      "fov_y_deg": config.views.fov_y_deg},
            "frame": "unit cube [-0.5, 0.5]^3, Blender frame +Z up facing -Y (backend/mesh/export.py)",
            "members": MEMBERS, "splits": splits,
            "generators": {g: {"made": by_generator[g], "kept": kept[g], "licence": licences[g]} for g in licences},
            "filters": {"thresholds": _thresholds(config), "rejected": dict(sorted(reasons.items())),
                        "rejected_assets": len(rejects), "judged_assets": len(judged)},
            "notes": notes}


def _thresholds(config: RunConfig) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(config.filters)


def datacard(m: dict[str, Any]) -> str:
    """The data card: what the dataset is, how many, what was filtered and why, and under which licences."""
    lines = [f"# Data card: {m['name']}", "",
             f"Synthetic 3D assets for Hi3DGen's NoRLD (format `{m['format']}`, config digest `{m['config_digest']}`,"
             f" seed {m['seed']}). Made by `python -m synthesis run`.", "",
             "## Counts", "", "| split | assets | shards |", "|---|---|---|"]
    lines += [f"| {s} | {v['count']} | {len(v['shards'])} |" for s, v in m["splits"].items()]
    lines += ["", "## Generators", "", "| generator | made | kept | licence |", "|---|---|---|---|"]
    lines += [f"| {g} | {v['made']} | {v['kept']} | {v['licence']} |" for g, v in m["generators"].items()]
    f = m["filters"]
    lines += ["", "## Filters", "", f"{f['rejected_assets']} of {f['judged_assets']} assets rejected "
              "(one asset can fail several filters; every reason is in rejections.jsonl).", "",
              "| filter | assets failing |", "|---|---|"]
    lines += [f"| {name} | {count} |" for name, count in f["rejected"].items()] or ["| (none) | 0 |"]
    lines += ["", "Thresholds: " + ", ".join(f"`{k}` = {v}" for k, v in f["thresholds"].items()), "",
              "## Labels", "", f"Occupancy grids {m['resolution']}^3 and {m['surface_points']} surface samples per "
              f"asset, in the {m['frame']}. Members of each sample:", ""]
    lines += [f"- `<id>.{k}`: {v}" for k, v in m["members"].items()]
    if m["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in m["notes"]]
    return "\n".join(lines) + "\n"


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode()


def shard_paths(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.tar"))
