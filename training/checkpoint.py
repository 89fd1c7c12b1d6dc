"""Resumable training state without pickle: safetensors for tensors, JSON for everything else.

``<out>/checkpoints/step_<N>/`` holds ``model.safetensors`` (the trained weights), ``ema.safetensors``,
``optimizer.safetensors`` (AdamW moments, keyed ``<param index>.<name>``), ``rng.safetensors`` (torch CPU and
CUDA generator states) and ``state.json`` (step, optimizer hyper-parameters, scheduler, Python and numpy RNG
states, the config). A folder is written under a temporary name and renamed, so a crash never leaves a half
checkpoint under a real name. Loading reads only these files, so an untrusted checkpoint runs no code.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backend.models.configs import read_json_file

PREFIX = "step_"


def checkpoint_dir(out: Path, step: int) -> Path:
    return Path(out) / "checkpoints" / f"{PREFIX}{step:08d}"


def list_checkpoints(out: Path) -> list[tuple[int, Path]]:
    """(step, folder) of the complete checkpoints under ``<out>/checkpoints``, oldest first."""
    root = Path(out) / "checkpoints"
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        digits = path.name.removeprefix(PREFIX)
        if path.name.startswith(PREFIX) and digits.isdigit() and (path / "state.json").is_file():
            found.append((int(digits), path))
    return sorted(found)


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors.update({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    plain = {"python": [version, list(internal), gauss],
             "numpy": [np_state[0], np_state[1].tolist(), *(int(v) if i < 2 else float(v)
                                                             for i, v in enumerate(np_state[2:]))]}
    return tensors, plain


def _set_rng_state(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    version, internal, gauss = plain["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = plain["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def _optimizer_split(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entries in state["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{name}"] = value
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in state["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def _optimizer_join(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in [*tensors.items(), *plain["scalars"].items()]:
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in plain["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_checkpoint(out: Path, step: int, model: torch.nn.Module, ema: dict[str, torch.Tensor],
                    optimizer: torch.optim.Optimizer, scheduler: Any, extra: dict[str, Any]) -> Path:
    """Write the state after ``step`` optimizer steps; returns the checkpoint folder."""
    from safetensors.torch import save_file

    final = checkpoint_dir(out, step)
    temp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir(parents=True)
    opt_tensors, opt_plain = _optimizer_split(optimizer)
    rng_tensors, rng_plain = _rng_state()
    for name, tensors in (("model", model.state_dict()), ("ema", ema)):
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(temp / f"{name}.safetensors"))
    save_file(opt_tensors, str(temp / "optimizer.safetensors"))
    save_file(rng_tensors, str(temp / "rng.safetensors"))
    state = {"step": step, "optimizer": opt_plain, "scheduler": scheduler.state_dict(), "rng": rng_plain, **extra}
    (temp / "state.json").write_text(json.dumps(state), encoding="utf-8")
    if final.exists():
        shutil.rmtree(final)
    os.replace(temp, final)
    return final


def load_checkpoint(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, device: torch.device) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Restore model, optimizer, scheduler and RNG states in place; returns (state.json, EMA tensors)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    for name in ("model", "ema", "optimizer", "rng"):
        path = folder / f"{name}.safetensors"
        if not path.is_file() or path.is_symlink():
            raise ValueError(f"checkpoint {folder} lacks {path.name}; delete the folder to resume from an older one")
    state = read_json_file(folder / "state.json", max_bytes=64 << 20)
    model.load_state_dict(load_file(str(folder / "model.safetensors"), device=str(device)), strict=True)
    optimizer.load_state_dict(_optimizer_join(load_file(str(folder / "optimizer.safetensors")), state["optimizer"]))
    scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(load_file(str(folder / "rng.safetensors")), state["rng"])
    return state, load_file(str(folder / "ema.safetensors"), device=str(device))


def prune_checkpoints(out: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints."""
    for _, path in list_checkpoints(out)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)
