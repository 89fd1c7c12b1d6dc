"""The NiRNE training configuration: two flat dataclasses read from a TOML file, every value checked.

::

    [model]
    init = ""              # a yoso-normal release folder to start from ('' = fresh 'preset' networks)
    preset = "tiny"        # the fresh networks' sizes (only 'tiny': CPU tests and benches)
    seed = 0               # seed of a fresh init

    [train]
    steps_real = 200       # stage 1: both streams on the real-domain split
    steps_synthetic = 100  # stage 2: the noisy (detail) stream alone on the synthetic split, the clean one frozen
    noise_t_max = 400      # injected noise: t ~ U{0..noise_t_max} of the DDPM schedule (0 = no injection)
    ...                    # see NirneTrain
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import read_config, section

PRESETS = ("tiny",)


@dataclass(frozen=True)
class NirneModel:
    init: str = ""
    "A yoso-normal release folder (model_index.json, unet/, vae/, controlnet/) to fine-tune; '' = fresh."
    preset: str = "tiny"
    seed: int = 0


@dataclass(frozen=True)
class NirneTrain:
    """Stages, noise injection, loss, optimisation, precision and bookkeeping."""

    steps_real: int = 200
    steps_synthetic: int = 100
    batch_size: int = 4
    grad_accum: int = 1
    lr: float = 1e-4
    lr_synthetic: float = 0.0
    "Learning rate of stage 2 (0 = the same as ``lr``)."
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    grad_clip: float = 1.0
    ema_rate: float = 0.999
    export: str = "ema"
    "Which weights the exported release folder holds: 'ema' or 'model'."
    export_dtype: str = "fp16"
    "'fp16' writes ``diffusion_pytorch_model.fp16.safetensors`` as the release; 'fp32' the plain name."
    noise_t_max: int = 400
    "Largest DDPM timestep of the injected noise (t ~ U{0..noise_t_max}); 0 turns injection off."
    latent_weight: float = 1.0
    "Weight of the latent-space MSE to the normal latent."
    pixel_weight: float = 0.0
    "Weight of the pixel-space angular loss (1 - cos) of the decoded normals inside the mask."
    precision: str = "auto"
    "'auto' (bf16 autocast on CUDA, float32 on CPU), 'bf16' (CUDA only) or 'fp32'."
    seed: int = 0
    log_every: int = 10
    save_every: int = 100
    keep_checkpoints: int = 2

    @property
    def steps(self) -> int:
        return self.steps_real + self.steps_synthetic


@dataclass(frozen=True)
class NirneConfig:
    model: NirneModel = field(default_factory=NirneModel)
    train: NirneTrain = field(default_factory=NirneTrain)


_BOUNDS: dict[str, tuple[float, float]] = {
    "steps_real": (0, 10**9), "steps_synthetic": (0, 10**9), "lr_synthetic": (0.0, 1.0),
    "noise_t_max": (0, 999), "latent_weight": (0.0, 1e6), "pixel_weight": (0.0, 1e6), "ema_rate": (0.0, 1.0),
}
_CHOICES = {"preset": PRESETS, "export_dtype": ("fp16", "fp32")}


def load_nirne_config(path: Path) -> NirneConfig:
    """Read and check a TOML config; ``ValueError`` names the file and the bad key."""
    return read_config(path, nirne_config_from_dict)


def nirne_config_from_dict(doc: dict[str, Any]) -> NirneConfig:
    """A checked ``NirneConfig`` from ``{"model": {...}, "train": {...}}`` (unknown keys refused)."""
    unknown = set(doc) - {"model", "train"}
    if unknown:
        raise ValueError(f"unknown table(s) {sorted(unknown)} (known: model, train)")
    config = NirneConfig(model=section(NirneModel, doc.get("model", {}), "model", _check),
                         train=section(NirneTrain, doc.get("train", {}), "train", _check))
    if config.train.steps < 1:
        raise ValueError("steps_real + steps_synthetic must be at least 1")
    return config


def nirne_config_to_dict(config: NirneConfig) -> dict[str, Any]:
    out = dataclasses.asdict(config)
    out["train"]["betas"] = list(config.train.betas)
    return out


def _check(name: str, key: str, value: Any) -> None:
    if key in _CHOICES and value not in _CHOICES[key]:
        raise ValueError(f"{name}={value!r} must be one of {', '.join(_CHOICES[key])}")
    if key in _BOUNDS and not _BOUNDS[key][0] <= value <= _BOUNDS[key][1]:
        raise ValueError(f"{name}={value!r} is outside {list(_BOUNDS[key])}")
