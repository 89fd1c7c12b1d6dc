"""Training configuration: three flat dataclasses read from a TOML file, every value checked.

A config file has up to three tables; unknown keys are refused (a typo never trains silently with a
default)::

    [model]                     # the network being trained: a backend variant, optionally changed
    variant = "tiny_ss_flow"    # a name of backend.models.configs.VARIANTS
    overrides = { patch_size = 2 }
    init = ""                   # optional release folder to start from (its sparse_structure_flow_model)

    [decoder]                   # the frozen structure decoder the normal regulariser decodes with
    variant = "tiny_ss_dec"     # or release = "<release folder>" to load its sparse_structure_decoder
    overrides = {}

    [train]
    steps = 1000
    batch_size = 8              # samples per optimizer step, over all processes and accumulation steps
    ...                         # see TrainSection
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

MAX_CONFIG_BYTES = 1 << 20
T = TypeVar("T")


@dataclass(frozen=True)
class ModelSection:
    """The flow network: ``variant`` from ``backend.models.configs.VARIANTS`` with ``overrides`` applied."""

    variant: str = "tiny_ss_flow"
    overrides: dict[str, Any] = field(default_factory=dict)
    init: str = ""
    "A release folder whose ``sparse_structure_flow_model`` is the starting point (fine-tuning); '' = fresh."


@dataclass(frozen=True)
class DecoderSection:
    """The frozen structure decoder of the normal regulariser (unused when ``normal_weight`` is 0)."""

    variant: str = "tiny_ss_dec"
    overrides: dict[str, Any] = field(default_factory=dict)
    release: str = ""
    "A release folder whose ``sparse_structure_decoder`` is used instead of a fresh ``variant``."
    seed: int = 0
    "Seed of the random weights of a fresh ``variant`` decoder (tests and benches only)."


@dataclass(frozen=True)
class TrainSection:
    """Optimisation, flow matching, regulariser, precision and bookkeeping settings."""

    steps: int = 1000
    batch_size: int = 8
    grad_accum: int = 1
    "Micro-batches per optimizer step on each process (batch_size = world * grad_accum * micro-batch)."
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    lr_schedule: str = "constant"
    "After the linear warmup: 'constant', or 'cosine' (half a cosine from lr down to lr / 100 at the last step)."
    grad_clip: float = 1.0
    "Largest gradient norm (0 turns clipping off)."
    ema_rate: float = 0.9999
    export: str = "ema"
    "Which weights the release-layout export holds: 'ema' or 'model'."
    p_uncond: float = 0.1
    "Probability that a sample's condition is replaced by zeros (the engine's negative condition)."
    sigma_min: float = 1e-5
    t_mean: float = 1.0
    t_std: float = 1.0
    "Times are logit-normal: t = sigmoid(N(t_mean, t_std)), TRELLIS' schedule for its image-conditioned flows."
    normal_weight: float = 0.0
    "Weight of the normal regulariser (0 = plain flow matching)."
    normal_points: int = 1024
    "Surface points per sample the regulariser compares."
    normal_t_max: float = 1.0
    "Only samples with t <= this take the regulariser (the clean-latent estimate is poor near pure noise)."
    precision: str = "auto"
    "'auto' (bf16 autocast on CUDA, float32 on CPU), 'bf16' (CUDA only) or 'fp32'."
    seed: int = 0
    log_every: int = 10
    save_every: int = 500
    keep_checkpoints: int = 2
    export_name: str = "ss_flow_trained"
    "Base name of the exported ``ckpts/<export_name>.{json,safetensors}``."


@dataclass(frozen=True)
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    decoder: DecoderSection = field(default_factory=DecoderSection)
    train: TrainSection = field(default_factory=TrainSection)


_BOUNDS: dict[str, tuple[float, float]] = {
    "steps": (1, 10**9), "batch_size": (1, 1 << 16), "grad_accum": (1, 1 << 12), "lr": (0.0, 1.0),
    "weight_decay": (0.0, 10.0), "betas": (0.0, 0.999999), "warmup_steps": (0, 10**9), "grad_clip": (0.0, 1e6),
    "ema_rate": (0.0, 1.0), "p_uncond": (0.0, 1.0), "sigma_min": (0.0, 0.5), "t_mean": (-10.0, 10.0),
    "t_std": (1e-3, 10.0), "normal_weight": (0.0, 1e6), "normal_points": (1, 1 << 20), "normal_t_max": (0.0, 1.0),
    "seed": (0, 2**62), "log_every": (1, 10**9), "save_every": (1, 10**9), "keep_checkpoints": (1, 1000),
}
_CHOICES = {"export": ("ema", "model"), "precision": ("auto", "bf16", "fp32"),
            "lr_schedule": ("constant", "cosine")}


def load_config(path: Path) -> TrainConfig:
    """Read and check a TOML config; ``ValueError`` names the file and the bad key."""
    return read_config(path, config_from_dict)


def read_config(path: Path, from_dict: Callable[[dict[str, Any]], T]) -> T:
    """``from_dict`` of the TOML document at ``path`` (a regular file of at most ``MAX_CONFIG_BYTES``);
    ``ValueError`` names the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config {path} is not a file")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ValueError(f"config {path} is larger than {MAX_CONFIG_BYTES} bytes")
    toml = _toml_module()
    try:
        doc = toml.loads(path.read_text(encoding="utf-8"))
    except (toml.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"config {path} is not valid TOML: {exc}") from None
    try:
        return from_dict(doc)
    except ValueError as exc:
        raise ValueError(f"config {path}: {exc}") from None


def _toml_module() -> Any:
    """``tomllib`` (Python >= 3.11) or its backport ``tomli`` on 3.10."""
    try:
        import tomllib
    except ImportError:
        try:
            import tomli as tomllib
        except ImportError:
            raise ValueError("reading TOML needs Python 3.11 or the 'tomli' package (pip install tomli)") from None
    return tomllib


def config_from_dict(doc: dict[str, Any]) -> TrainConfig:
    """A ``TrainConfig`` from a parsed document ``{"model": {...}, "decoder": {...}, "train": {...}}``."""
    sections = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    unknown = set(doc) - set(sections)
    if unknown:
        raise ValueError(f"unknown table(s) {sorted(unknown)} (known: {', '.join(sections)})")
    hints = typing.get_type_hints(TrainConfig)
    return TrainConfig(**{name: section(hints[name], doc.get(name, {}), name) for name in sections})


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """The inverse of ``config_from_dict`` (tuples as lists), for logs and checkpoints."""
    out = dataclasses.asdict(config)
    out["train"]["betas"] = list(config.train.betas)
    return out


def section(cls: type, table: Any, name: str, check: Callable[[str, str, Any], None] | None = None) -> Any:
    """The dataclass ``cls`` from the TOML table ``[name]``: unknown keys refused, every value checked for
    its type and the shared bounds, then by ``check(name.key, key, value)`` when given."""
    if not isinstance(table, dict):
        raise ValueError(f"[{name}] is not a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(table) - fields
    if unknown:
        raise ValueError(f"[{name}] has unknown key(s) {sorted(unknown)} (known: {', '.join(sorted(fields))})")
    values = {}
    for key, value in table.items():
        values[key] = _value(f"{name}.{key}", hints[key], value)
        if check is not None:
            check(f"{name}.{key}", key, values[key])
    return cls(**values)


def _value(name: str, hint: Any, value: Any) -> Any:
    key = name.split(".")[-1]
    if hint is bool or (hint is int and isinstance(value, bool)):
        raise ValueError(f"{name}={value!r} must be an integer")
    if hint is int and not isinstance(value, int):
        raise ValueError(f"{name}={value!r} must be an integer")
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name}={value!r} must be a finite number")
        value = float(value)
    if hint is str and (not isinstance(value, str) or len(value) > 4096):
        raise ValueError(f"{name}={value!r} must be a string")
    if typing.get_origin(hint) is dict and not isinstance(value, dict):
        raise ValueError(f"{name} must be a table")
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, list) or len(value) != 2:
            raise ValueError(f"{name}={value!r} must be a list of two numbers")
        value = tuple(_value(name, float, v) for v in value)
    _check_range(name, key, value)
    return value


def _check_range(name: str, key: str, value: Any) -> None:
    if key in _CHOICES and value not in _CHOICES[key]:
        raise ValueError(f"{name}={value!r} must be one of {', '.join(_CHOICES[key])}")
    if key == "export_name" and (not value or not all(c.isalnum() or c in "_-." for c in value)
                                 or value.startswith(".")):
        raise ValueError(f"{name}={value!r} must be a plain file name (letters, digits, '_', '-', '.')")
    if key in _BOUNDS:
        low, high = _BOUNDS[key]
        for v in value if isinstance(value, tuple) else (value,):
            if not low <= v <= high:
                raise ValueError(f"{name}={value!r} is outside [{low}, {high}]")
