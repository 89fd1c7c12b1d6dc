"""Trained NiRNE weights as a yoso-normal release folder, the layout ``backend/nirne/loading.py`` loads strictly.

::

    <folder>/model_index.json
    <folder>/{unet,vae,controlnet}/config.json
    <folder>/{unet,vae,controlnet}/diffusion_pytorch_model.fp16.safetensors   (or the plain name in fp32)

The control branch keeps its unused modules (cond-embedding, zero-convs), so its keys equal the release's.
No ``controlnetvae.py`` is written: the backend never runs remote code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from backend.atomic import write_atomic
from backend.nirne.loading import COMPONENTS, WEIGHT_NAMES

DTYPES = {"fp16": (torch.float16, WEIGHT_NAMES[0]), "fp32": (torch.float32, WEIGHT_NAMES[1])}


def write_release_folder(folder: Path, configs: dict[str, dict[str, Any]], model_index: dict[str, Any],
                         states: dict[str, dict[str, torch.Tensor]], dtype: str = "fp16") -> Path:
    """Write the three components' configs and weights and the index under ``folder``; returns ``folder``."""
    from safetensors.torch import save_file

    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} must be fp16 or fp32")
    torch_dtype, weight_name = DTYPES[dtype]
    folder = Path(folder)
    for name in COMPONENTS:
        (folder / name).mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().to("cpu", torch_dtype).contiguous() for k, v in states[name].items()}
        write_atomic(folder / name / weight_name, lambda tmp, t=tensors: save_file(t, str(tmp)))
        for other in WEIGHT_NAMES:  # a stale file of the other precision would be loaded first
            if other != weight_name and (folder / name / other).is_file():
                (folder / name / other).unlink()
        _write_json(folder / name / "config.json", configs[name])
    _write_json(folder / "model_index.json", model_index)
    return folder


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    text = json.dumps(doc, indent=2)
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def split_states(streams_state: dict[str, torch.Tensor], vae_state: dict[str, torch.Tensor]
                 ) -> dict[str, dict[str, torch.Tensor]]:
    """A ``DualStream`` state dict (``unet.*``, ``controlnet.*``) and the VAE's -> one state per component."""
    states: dict[str, dict[str, torch.Tensor]] = {"unet": {}, "controlnet": {}, "vae": dict(vae_state)}
    for key, value in streams_state.items():
        head, _, rest = key.partition(".")
        states[head][rest] = value
    return states
