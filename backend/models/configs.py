"""Network configurations: one dataclass per network, the release's named variants, JSON parsing.

Field names are the ``args`` of the release's ``ckpts/<name>.json`` files; fields with a default are
the ones the release JSONs may omit. Arguments a dataclass does not know (``use_checkpoint``...) are
kept in ``extra`` so nothing is silently lost.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SSFlowConfig:
    """``SparseStructureFlowModel``: dense DiT over the 16^3 x 8 latent grid."""

    resolution: int
    in_channels: int
    out_channels: int
    model_channels: int
    cond_channels: int
    num_blocks: int
    num_heads: int | None = None
    num_head_channels: int = 64
    mlp_ratio: float = 4.0
    patch_size: int = 2
    pe_mode: str = "ape"
    qk_rms_norm: bool = False
    qk_rms_norm_cross: bool = False
    share_mod: bool = False
    use_fp16: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def heads(self) -> int:
        return self.num_heads or self.model_channels // self.num_head_channels


@dataclass(frozen=True)
class SSDecoderConfig:
    """``SparseStructureDecoder``: 3D conv decoder from the 16^3 latent to 64^3 occupancy logits."""

    out_channels: int
    latent_channels: int
    num_res_blocks: int
    channels: tuple[int, ...]
    num_res_blocks_middle: int = 2
    norm_type: str = "layer"
    use_fp16: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class SLatFlowConfig:
    """``SLatFlowModel``: sparse U-DiT over the occupied 64^3 voxels."""

    resolution: int
    in_channels: int
    out_channels: int
    model_channels: int
    cond_channels: int
    num_blocks: int
    num_heads: int | None = None
    num_head_channels: int = 64
    mlp_ratio: float = 4.0
    patch_size: int = 2
    num_io_res_blocks: int = 2
    io_block_channels: tuple[int, ...] | None = None
    pe_mode: str = "ape"
    qk_rms_norm: bool = False
    qk_rms_norm_cross: bool = False
    share_mod: bool = False
    use_skip_connection: bool = True
    use_fp16: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def heads(self) -> int:
        return self.num_heads or self.model_channels // self.num_head_channels


@dataclass(frozen=True)
class MeshDecoderConfig:
    """``SLatMeshDecoder``: swin sparse transformer + two subdivisions -> per-voxel mesh features."""

    resolution: int
    model_channels: int
    latent_channels: int
    num_blocks: int
    num_heads: int | None = None
    num_head_channels: int = 64
    mlp_ratio: float = 4.0
    attn_mode: str = "swin"
    window_size: int = 8
    pe_mode: str = "ape"
    qk_rms_norm: bool = False
    use_fp16: bool = False
    representation_config: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def heads(self) -> int:
        return self.num_heads or self.model_channels // self.num_head_channels

    @property
    def out_channels(self) -> int:
        """8 sdf + 24 deform + 21 FlexiCubes weights (+ 48 colour/normal when use_color): 101 or 53."""
        return 53 + (48 if self.representation_config.get("use_color", False) else 0)


@dataclass(frozen=True)
class DinoV2Config:
    """DINOv2 ViT with register tokens (``dinov2_vitl14_reg``); LayerNorm eps 1e-6, GELU MLP."""

    img_size: int
    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    num_register_tokens: int
    mlp_ratio: float = 4.0
    interpolate_antialias: bool = True
    interpolate_offset: float = 0.0
    ffn_layer: str = "mlp"
    layerscale_init: float = 1e-5
    block_chunks: int = 0
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size


NetworkConfig = SSFlowConfig | SSDecoderConfig | SLatFlowConfig | MeshDecoderConfig | DinoV2Config

CLASS_CONFIGS: dict[str, type] = {
    "SparseStructureFlowModel": SSFlowConfig,
    "SparseStructureDecoder": SSDecoderConfig,
    "SLatFlowModel": SLatFlowConfig,
    "SLatMeshDecoder": MeshDecoderConfig,
    "DinoVisionTransformer": DinoV2Config,
}
"Release class name (``name`` in ``ckpts/*.json``) -> config dataclass."

_SS_FLOW_L = SSFlowConfig(
    resolution=16,
    in_channels=8,
    out_channels=8,
    model_channels=1024,
    cond_channels=1024,
    num_blocks=24,
    num_heads=16,
    mlp_ratio=4,
    patch_size=1,
    pe_mode="ape",
    qk_rms_norm=True,
    use_fp16=True,
)
_SS_DEC = SSDecoderConfig(
    out_channels=1,
    latent_channels=8,
    num_res_blocks=2,
    num_res_blocks_middle=2,
    channels=(512, 128, 32),
    use_fp16=True,
)
_SLAT_FLOW_L = SLatFlowConfig(
    resolution=64,
    in_channels=8,
    out_channels=8,
    model_channels=1024,
    cond_channels=1024,
    num_blocks=24,
    num_heads=16,
    mlp_ratio=4,
    patch_size=2,
    num_io_res_blocks=2,
    io_block_channels=(128,),
    pe_mode="ape",
    qk_rms_norm=True,
    use_fp16=True,
)
_MESH_DEC_B = MeshDecoderConfig(
    resolution=64,
    model_channels=768,
    latent_channels=8,
    num_blocks=12,
    num_heads=12,
    mlp_ratio=4,
    attn_mode="swin",
    window_size=8,
    use_fp16=True,
    representation_config={"use_color": True},
)
_DINOV2_L_REG = DinoV2Config(
    img_size=518,
    patch_size=14,
    embed_dim=1024,
    depth=24,
    num_heads=16,
    num_register_tokens=4,
)

VARIANTS: dict[str, NetworkConfig] = {
    # The official networks (trellis-normal-v0-1 checkpoint names, and the DINOv2 hub name).
    "ss_flow_normal_dit_L_16l8_fp16": _SS_FLOW_L,
    "ss_dec_conv3d_16l8_fp16": _SS_DEC,
    "slat_flow_normal_dit_L_64l8p2_fp16": _SLAT_FLOW_L,
    "slat_dec_mesh_swin8_B_64l8m256c_fp16": _MESH_DEC_B,
    "dinov2_vitl14_reg": _DINOV2_L_REG,
    # Tiny variants for tests: same grids and token layout, a few channels and blocks.
    "tiny_ss_flow": dataclasses.replace(
        _SS_FLOW_L, model_channels=32, cond_channels=32, num_blocks=2, num_heads=2, use_fp16=False
    ),
    "tiny_ss_dec": dataclasses.replace(
        _SS_DEC, num_res_blocks=1, num_res_blocks_middle=1, channels=(16, 8, 8), use_fp16=False
    ),
    "tiny_slat_flow": dataclasses.replace(
        _SLAT_FLOW_L,
        model_channels=32,
        cond_channels=32,
        num_blocks=2,
        num_heads=2,
        io_block_channels=(16,),
        use_fp16=False,
    ),
    "tiny_mesh_dec": dataclasses.replace(  # GroupNorm(32) needs 256 / 4 and 256 / 8 divisible by 32
        _MESH_DEC_B, model_channels=256, num_blocks=2, num_heads=4, use_fp16=False
    ),
    "tiny_dinov2": dataclasses.replace(_DINOV2_L_REG, embed_dim=32, depth=2, num_heads=2),
}

RELEASE_CLASS: dict[type, str] = {cls: name for name, cls in CLASS_CONFIGS.items()}
"Config dataclass -> release class name (for writing ``ckpts/*.json``)."


def config_from_args(class_name: str, args: dict[str, Any]) -> NetworkConfig:
    """Build the config dataclass of release class ``class_name`` from its JSON ``args``.

    Unknown arguments go to ``extra``; lists become tuples. Raises ``ValueError`` for an unknown class,
    a missing required argument or an unsupported value.
    """
    if class_name not in CLASS_CONFIGS:
        raise ValueError(f"unknown network class '{class_name}' (known: {', '.join(CLASS_CONFIGS)})")
    cls = CLASS_CONFIGS[class_name]
    names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
    known = {k: tuple(v) if isinstance(v, list) else v for k, v in args.items() if k in names}
    extra = {k: v for k, v in args.items() if k not in names}
    try:
        config = cls(**known, extra=extra)
    except TypeError as exc:
        raise ValueError(f"{class_name}: {exc}") from None
    check_values(config)
    check_supported(config)
    return config


def config_to_args(config: NetworkConfig) -> dict[str, Any]:
    """The JSON ``args`` of a config (inverse of ``config_from_args``; ``extra`` merged back)."""
    args = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name != "extra"}
    args = {k: list(v) if isinstance(v, tuple) else v for k, v in args.items()}
    return {**args, **config.extra}


MAX_JSON_BYTES = 1 << 20
"A network or pipeline description is a few kB; anything over this is refused unread."

INT_BOUNDS: dict[str, tuple[int, int]] = {
    "resolution": (1, 1024), "img_size": (1, 4096), "patch_size": (1, 64), "window_size": (1, 64),
    "in_channels": (1, 4096), "out_channels": (1, 4096), "latent_channels": (1, 4096),
    "model_channels": (1, 16384), "cond_channels": (1, 16384), "embed_dim": (1, 16384),
    "channels": (1, 16384), "io_block_channels": (1, 16384),
    "num_blocks": (1, 256), "depth": (1, 256), "num_res_blocks": (0, 64), "num_res_blocks_middle": (0, 64),
    "num_io_res_blocks": (0, 64), "num_heads": (1, 1024), "num_head_channels": (1, 4096),
    "num_register_tokens": (0, 256), "block_chunks": (0, 256),
}
"""Sane ranges of integer arguments (the release's values are well inside): a bigger one is refused before a
module is built, so a hostile JSON cannot ask for 10^9 layers."""
FLOAT_BOUNDS: dict[str, tuple[float, float]] = {
    "mlp_ratio": (0.01, 64.0), "interpolate_offset": (-1.0, 1.0), "layerscale_init": (0.0, 10.0)}
MAX_TUPLE = 8
"Most entries of a per-level channel list (``channels``, ``io_block_channels``)."


def check_values(config: NetworkConfig) -> None:
    """Reject arguments of the wrong JSON type or outside ``INT_BOUNDS`` / ``FLOAT_BOUNDS``, and shapes the
    network cannot have (channels not divisible by heads, a patch larger than the grid...)."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        if f.name != "extra":
            _check_field(f.name, hints[f.name], getattr(config, f.name))
    _check_shapes(config)


def _check_field(name: str, hint: Any, value: Any) -> None:
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else ()
    if options and type(None) in options:
        if value is None:
            return
        hint = next(o for o in options if o is not type(None))
    origin = typing.get_origin(hint)
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif hint is str:
        ok = isinstance(value, str) and len(value) <= 64
    elif origin is tuple:
        ok = isinstance(value, tuple) and 1 <= len(value) <= MAX_TUPLE and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value)
    else:  # dict[str, Any]
        ok = isinstance(value, dict)
    if not ok:
        raise ValueError(f"argument {name}={value!r} has the wrong type (expected {_hint_name(hint)})")
    low, high = INT_BOUNDS.get(name, FLOAT_BOUNDS.get(name, (None, None)))  # type: ignore[arg-type]
    values = value if isinstance(value, tuple) else (value,)
    if low is not None and not isinstance(value, (bool, str, dict)) and not all(low <= v <= high for v in values):
        raise ValueError(f"argument {name}={value!r} is outside the supported range [{low}, {high}]")


def _hint_name(hint: Any) -> str:
    return "a list of integers" if typing.get_origin(hint) is tuple else getattr(hint, "__name__", str(hint))


def _check_shapes(config: NetworkConfig) -> None:
    width = config.embed_dim if isinstance(config, DinoV2Config) else getattr(config, "model_channels", None)
    if width is not None and not isinstance(config, (SSDecoderConfig,)):
        heads = config.num_heads if isinstance(config, DinoV2Config) else config.heads  # type: ignore[union-attr]
        if heads < 1 or width % heads:
            raise ValueError(f"{width} channels cannot be split into {heads} attention heads")
    if isinstance(config, (SSFlowConfig, SLatFlowConfig)) and config.resolution % config.patch_size:
        raise ValueError(f"resolution {config.resolution} is not a multiple of patch_size {config.patch_size}")
    if isinstance(config, DinoV2Config) and config.img_size < config.patch_size:
        raise ValueError(f"img_size {config.img_size} is smaller than patch_size {config.patch_size}")


def read_json_file(path: Path, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """The JSON document of a small file; ``ValueError`` when it is too large or not JSON, ``OSError``
    when it cannot be read."""
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise ValueError(f"{path} is {size} bytes; a configuration file has at most {max_bytes}")
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a configuration may hold")


def check_supported(config: NetworkConfig) -> None:
    """Reject release options this implementation does not have (rope, shared modulation...)."""
    problems = []
    if getattr(config, "pe_mode", "ape") != "ape":
        problems.append(f"pe_mode={config.pe_mode!r}")  # type: ignore[union-attr]
    if getattr(config, "share_mod", False):
        problems.append("share_mod=True")
    if isinstance(config, SSDecoderConfig) and config.norm_type != "layer":
        problems.append(f"norm_type={config.norm_type!r}")
    if isinstance(config, MeshDecoderConfig) and config.attn_mode not in ("swin", "full"):
        problems.append(f"attn_mode={config.attn_mode!r}")
    if isinstance(config, SLatFlowConfig) and not config.io_block_channels:
        problems.append("io_block_channels=None")
    if isinstance(config, DinoV2Config) and config.ffn_layer != "mlp":
        problems.append(f"ffn_layer={config.ffn_layer!r}")
    if problems:
        raise ValueError(f"{type(config).__name__}: unsupported {', '.join(problems)}")


def parse_release_json(path: Path) -> NetworkConfig:
    """Read a release ``ckpts/<name>.json`` (``{"name": ClassName, "args": {...}}``) into its config.

    Raises ``ValueError`` (malformed content) or ``OSError`` (unreadable file).
    """
    data = read_json_file(Path(path))
    if not isinstance(data, dict) or "name" not in data or not isinstance(data.get("args"), dict):
        raise ValueError(f"{path}: expected {{'name': ..., 'args': {{...}}}}")
    return config_from_args(data["name"], data["args"])


def release_json(config: NetworkConfig) -> dict[str, Any]:
    """The ``{"name", "args"}`` document the release stores next to a checkpoint."""
    return {"name": RELEASE_CLASS[type(config)], "args": config_to_args(config)}
