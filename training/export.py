"""Trained weights in the release layout: ``<name>.json`` ({"name", "args"}) + ``<name>.safetensors``.

Exactly what ``backend.models.loading.load_checkpoint`` reads strictly, so the engine loads a trainer's output
with no conversion. ``place_in_release`` puts such a checkpoint into a release folder under a pipeline name.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from backend.atomic import write_atomic
from backend.models.configs import NetworkConfig, read_json_file, release_json
from backend.models.loading import PIPELINE_NAMES, checkpoint_path


def write_release_checkpoint(base: Path, config: NetworkConfig, state: dict[str, torch.Tensor]) -> Path:
    """Write ``<base>.json`` and ``<base>.safetensors`` (float32, contiguous) atomically; returns ``base``."""
    from safetensors.torch import save_file

    base = Path(base)
    base.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state.items()}
    write_atomic(base.with_name(base.name + ".safetensors"), lambda tmp: save_file(tensors, str(tmp)))
    text = json.dumps(release_json(config), indent=2)
    write_atomic(base.with_name(base.name + ".json"), lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return base


def place_in_release(folder: Path, pipeline_name: str, base: Path) -> str:
    """Copy the checkpoint ``base`` into ``<folder>/ckpts/`` and point pipeline.json's ``pipeline_name`` at it.

    Returns the new ``ckpts/<name>`` entry. The folder's other networks are left as they are.
    """
    if pipeline_name not in PIPELINE_NAMES:
        raise ValueError(f"unknown pipeline name {pipeline_name!r} (known: {', '.join(PIPELINE_NAMES)})")
    folder, base = Path(folder), Path(base)
    entry = checkpoint_path(f"ckpts/{base.name}", folder / "pipeline.json")
    (folder / "ckpts").mkdir(parents=True, exist_ok=True)
    for ext in (".json", ".safetensors"):
        source, target = base.with_name(base.name + ext), folder / (entry + ext)
        write_atomic(target, lambda tmp, s=source: shutil.copyfile(s, tmp))
    doc = read_json_file(folder / "pipeline.json")
    doc["args"]["models"][pipeline_name] = entry
    text = json.dumps(doc, indent=2)
    write_atomic(folder / "pipeline.json", lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return entry
