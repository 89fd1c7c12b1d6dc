"""Build networks on the meta device and load release checkpoints strictly (keys, shapes), once.

Layout of the geometry release (``Stable-X/trellis-normal-v0-1``)::

    <folder>/pipeline.json                    args.models: pipeline name -> "ckpts/<name>"
    <folder>/ckpts/<name>.json                {"name": ClassName, "args": {...}}
    <folder>/ckpts/<name>.safetensors

DINOv2 comes from the Hugging Face folder of ``facebook/dinov2-with-registers-large``
(``config.json`` + ``model.safetensors`` in transformers naming), renamed by ``convert_hf_state_dict``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from torch import nn

from backend.errors import WeightsInvalid, WeightsMissing

from .configs import (
    VARIANTS,
    DinoV2Config,
    MeshDecoderConfig,
    NetworkConfig,
    SLatFlowConfig,
    SSDecoderConfig,
    SSFlowConfig,
    check_values,
    parse_release_json,
    read_json_file,
)

PIPELINE_NAMES = (
    "sparse_structure_flow_model",
    "sparse_structure_decoder",
    "slat_flow_model",
    "slat_decoder_mesh",
)
"The four geometry networks of pipeline.json, in the order they run."

_REDOWNLOAD = "Delete the file and download the model again."
FLOAT_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
"Safetensors dtypes a floating-point weight may have (the releases ship these): anything else is refused."
_DTYPE_NAMES = {"I8": "int8", "U8": "uint8", "I16": "int16", "U16": "uint16", "I32": "int32", "U32": "uint32",
                "I64": "int64", "U64": "uint64", "F64": "float64", "BOOL": "bool"}


def build_network(config: NetworkConfig, device: torch.device | str = "meta") -> nn.Module:
    """The network of ``config``, with uninitialised (``meta``) or freshly initialised parameters."""
    with torch.device(device):
        if isinstance(config, SSFlowConfig):
            from .ss_flow import SparseStructureFlowModel

            return SparseStructureFlowModel(config)
        if isinstance(config, SSDecoderConfig):
            from .ss_decoder import SparseStructureDecoder

            return SparseStructureDecoder(config)
        if isinstance(config, SLatFlowConfig):
            from .slat_flow import SLatFlowModel

            return SLatFlowModel(config)
        if isinstance(config, MeshDecoderConfig):
            from .mesh_decoder import SLatMeshDecoder

            return SLatMeshDecoder(config)
        if isinstance(config, DinoV2Config):
            from .dinov2 import DinoV2

            return DinoV2(config)
    raise TypeError(f"not a network config: {type(config).__name__}")


def expected_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Every state-dict key of ``model`` with its shape (works on the meta device)."""
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_tensors(
    expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]], path: Path
) -> None:
    """Raise ``WeightsInvalid`` naming ``path``, missing/unexpected keys and the first shape mismatch."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    mismatch = next(
        ((k, expected[k], found[k]) for k in expected if k in found and expected[k] != found[k]), None
    )
    if not (missing or unexpected or mismatch):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s) (first: {', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s) (first: {', '.join(unexpected[:3])})")
    if mismatch:
        key, want, got = mismatch
        parts.append(f"first shape mismatch: '{key}' expected {list(want)}, file has {list(got)}")
    raise WeightsInvalid(
        f"{path} does not match the network: " + "; ".join(parts) + ".",
        hint="The file belongs to another model version or is damaged; " + _REDOWNLOAD,
    )


def read_header(path: Path) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the tensors of a safetensors file, without reading the data."""
    return {k: shape for k, (shape, _) in read_layout(path).items()}


def read_layout(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """Names, shapes and dtypes ('F32', 'I8'...) of the tensors of a safetensors file, without the data."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise WeightsMissing(f"Weights file not found: {path}", hint="Download the model again.")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: (tuple(f.get_slice(k).get_shape()), str(f.get_slice(k).get_dtype()))
                    for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsInvalid(
            f"Weights file {path} is damaged or not a safetensors file: {exc}", hint=_REDOWNLOAD
        ) from None


def check_dtypes(layout: dict[str, tuple[tuple[int, ...], str]], floating: set[str], path: Path) -> None:
    """Every tensor named in ``floating`` must be float32, float16 or bfloat16 in the file."""
    for key in sorted(floating & layout.keys()):
        dtype = layout[key][1]
        if dtype not in FLOAT_DTYPES:
            name = _DTYPE_NAMES.get(dtype, dtype.lower())
            raise WeightsInvalid(
                f"{path}: tensor '{key}' is {name}, expected {', '.join(FLOAT_DTYPES.values())}.",
                hint="The file is not a release checkpoint (quantised or damaged); " + _REDOWNLOAD,
            )


def _check_file(model: nn.Module, path: Path) -> dict[str, torch.Tensor]:
    """Keys, shapes and dtypes of ``path`` against ``model`` (built on meta); returns its state targets."""
    targets = model.state_dict()
    layout = read_layout(path)
    check_tensors(expected_shapes(model), {k: shape for k, (shape, _) in layout.items()}, path)
    check_dtypes(layout, {k for k, v in targets.items() if v.is_floating_point()}, path)
    return targets


def _read_tensors(
    path: Path, targets: dict[str, torch.Tensor], device: torch.device | str
) -> dict[str, torch.Tensor]:
    """Read each tensor and cast it straight to its target's dtype on ``device`` (one copy at a time)."""
    from safetensors import SafetensorError, safe_open

    state: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(path), framework="pt") as f:
            for key, target in targets.items():
                state[key] = f.get_tensor(key).to(device=device, dtype=target.dtype)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise WeightsInvalid(f"Weights file {path} could not be read: {exc}", hint=_REDOWNLOAD) from None
    return state


def _materialise(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    model.load_state_dict(state, strict=True, assign=True)
    model.requires_grad_(False)
    return model.eval()


def load_checkpoint(
    base: Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> nn.Module:
    """Load ``<base>.json`` + ``<base>.safetensors`` (release layout) into a ready, eval-mode network.

    ``dtype`` is the torso's compute dtype (norms and I/O layers stay float32, as the release).
    Raises ``WeightsMissing`` naming the absent files, ``WeightsInvalid`` naming a bad file and key.
    """
    base = Path(base)
    json_path, st_path = base.with_name(base.name + ".json"), base.with_name(base.name + ".safetensors")
    absent = [str(p) for p in (json_path, st_path) if not p.is_file()]
    if absent:
        raise WeightsMissing(
            f"Missing weights file(s): {', '.join(absent)}", hint="Download the model again."
        )
    try:
        config = parse_release_json(json_path)
    except (ValueError, OSError) as exc:
        raise WeightsInvalid(
            f"{json_path} is not a usable network description: {exc}", hint=_REDOWNLOAD
        ) from None
    model = _build(config, json_path)
    model.set_compute_dtype(dtype)  # type: ignore[operator]
    targets = _check_file(model, st_path)
    return _materialise(model, _read_tensors(st_path, targets, device))


def _build(config: NetworkConfig, source: Path) -> nn.Module:
    """``build_network`` on meta; a configuration the modules still refuse is the file's fault."""
    try:
        return build_network(config, "meta")
    except (ValueError, RuntimeError, ZeroDivisionError) as exc:
        raise WeightsInvalid(f"{source} describes a network that cannot be built: {exc}",
                             hint=_REDOWNLOAD) from None


def load_into(model: nn.Module, path: Path, device: torch.device | str = "cpu") -> nn.Module:
    """Strictly load ``path`` (safetensors) into ``model`` built on the meta device; eval mode, no grads.

    Raises ``WeightsMissing`` / ``WeightsInvalid`` naming the file and the first mismatching key.
    """
    targets = _check_file(model, Path(path))
    return _materialise(model, _read_tensors(Path(path), targets, device))


@dataclass(frozen=True)
class SamplerParams:
    """A flow sampler entry of pipeline.json (FlowEulerGuidanceIntervalSampler)."""

    name: str = "FlowEulerGuidanceIntervalSampler"
    sigma_min: float = 1e-5
    steps: int = 25
    cfg_strength: float = 5.0
    cfg_interval: tuple[float, float] = (0.5, 1.0)
    rescale_t: float = 3.0


@dataclass(frozen=True)
class PipelineConfig:
    """The parts of the release's pipeline.json the backend uses."""

    models: dict[str, str]
    "Pipeline name -> checkpoint path relative to the folder, without extension ('ckpts/<name>')."
    slat_mean: tuple[float, ...]
    slat_std: tuple[float, ...]
    sparse_structure_sampler: SamplerParams = field(default_factory=SamplerParams)
    slat_sampler: SamplerParams = field(default_factory=SamplerParams)
    image_cond_model: str = "dinov2_vitl14_reg"
    name: str = "TrellisImageTo3DPipeline"


def _number(value: Any, name: str, low: float, high: float, integer: bool = False) -> float:
    """``value`` as a finite number in [low, high] (an int when ``integer``); ``ValueError`` otherwise."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
        raise ValueError(f"{name}={value!r} is not {'an integer' if integer else 'a finite number'}")
    if not low <= value <= high:
        raise ValueError(f"{name}={value!r} is outside [{low}, {high}]")
    return value


def _section(entry: Any, name: str) -> dict[str, Any]:
    if entry is None:
        return {}
    if not isinstance(entry, dict):
        raise ValueError(f"{name} is not an object")
    return entry


def _sampler(entry: Any, name: str) -> SamplerParams:
    entry = _section(entry, name)
    if not entry:
        return SamplerParams()
    params, args = _section(entry.get("params"), name + ".params"), _section(entry.get("args"), name + ".args")
    defaults = SamplerParams()
    interval = params.get("cfg_interval", defaults.cfg_interval)
    if not isinstance(interval, (list, tuple)) or len(interval) != 2:
        raise ValueError(f"{name}.params.cfg_interval is not a pair of numbers")
    low, high = (float(_number(v, f"{name}.params.cfg_interval", 0.0, 1.0)) for v in interval)
    if low > high:
        raise ValueError(f"{name}.params.cfg_interval {list(interval)} is not increasing")
    return SamplerParams(
        name=str(entry.get("name", defaults.name)),
        sigma_min=float(_number(args.get("sigma_min", defaults.sigma_min), f"{name}.args.sigma_min", 0.0, 0.5)),
        steps=int(_number(params.get("steps", defaults.steps), f"{name}.params.steps", 1, 1000, integer=True)),
        cfg_strength=float(_number(params.get("cfg_strength", defaults.cfg_strength),
                                   f"{name}.params.cfg_strength", 0.0, 100.0)),
        cfg_interval=(low, high),
        rescale_t=float(_number(params.get("rescale_t", defaults.rescale_t), f"{name}.params.rescale_t",
                                1e-3, 100.0)),
    )


def _statistics(values: Any, name: str, positive: bool) -> tuple[float, ...]:
    """The 8 latent channel statistics of slat_normalization."""
    if not isinstance(values, list) or len(values) != 8:
        raise ValueError(f"slat_normalization.{name} is not a list of 8 numbers")
    low = 1e-6 if positive else -1e6
    return tuple(float(_number(v, f"slat_normalization.{name}", low, 1e6)) for v in values)


def checkpoint_path(rel: Any, source: Path) -> str:
    """A checkpoint path of pipeline.json, checked to stay inside the model folder ('ckpts/<name>')."""
    text = rel if isinstance(rel, str) else ""
    parts = PurePosixPath(text).parts
    if not text or len(text) > 200 or "\\" in text or ":" in text or text.startswith("/") or ".." in parts:
        raise WeightsInvalid(f"{source} names the checkpoint {rel!r}, which is not a path inside the model "
                             "folder (absolute paths and '..' are refused).", hint=_REDOWNLOAD)
    return text


def check_inside(folder: Path, path: Path) -> None:
    """``path`` (after following links) must lie in ``folder`` or, for a Hugging Face cache snapshot,
    in that repository's ``blobs`` folder (the cache links every file there)."""
    root = Path(folder).resolve()
    roots = [root] + ([root.parent.parent / "blobs"] if root.parent.name == "snapshots" else [])
    real = Path(path).resolve()
    if not any(real.is_relative_to(r) for r in roots):
        raise WeightsInvalid(f"{path} links to {real}, outside the model folder {root}.",
                             hint="Copy the real files into the model folder instead of linking them.")


def read_pipeline_json(folder: Path) -> PipelineConfig:
    """Parse ``<folder>/pipeline.json``; ``WeightsMissing`` if absent, ``WeightsInvalid`` if malformed.

    Every value is checked (types, finite numbers in sane ranges, checkpoint paths inside the folder).
    """
    path = Path(folder) / "pipeline.json"
    if not path.is_file():
        raise WeightsMissing(f"Missing {path}", hint="Download the model again.")
    try:
        doc = read_json_file(path)
        args = _section(doc["args"], "args")
        norm = _section(args["slat_normalization"], "slat_normalization")
        models = _section(args["models"], "models")
        config = PipelineConfig(
            models={str(k): checkpoint_path(v, path) for k, v in models.items() if k in PIPELINE_NAMES},
            slat_mean=_statistics(norm["mean"], "mean", positive=False),
            slat_std=_statistics(norm["std"], "std", positive=True),
            sparse_structure_sampler=_sampler(args.get("sparse_structure_sampler"), "sparse_structure_sampler"),
            slat_sampler=_sampler(args.get("slat_sampler"), "slat_sampler"),
            image_cond_model=str(args.get("image_cond_model", "dinov2_vitl14_reg")),
            name=str(doc.get("name", "")),
        )
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise WeightsInvalid(f"{path} is malformed: {type(exc).__name__}: {exc}", hint=_REDOWNLOAD) from None
    absent = [n for n in PIPELINE_NAMES if n not in config.models]
    if absent:
        raise WeightsInvalid(f"{path} lists no model for: {', '.join(absent)}", hint=_REDOWNLOAD)
    return config


def missing_release_files(folder: Path, pipeline: PipelineConfig) -> list[str]:
    """The checkpoint files (json and safetensors) that pipeline.json names but the folder lacks."""
    names = [pipeline.models[n] + ext for n in PIPELINE_NAMES for ext in (".json", ".safetensors")]
    return [n for n in names if not (Path(folder) / n).is_file()]


def load_network(
    folder: Path, pipeline_name: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> nn.Module:
    """Load one geometry network (a ``PIPELINE_NAMES`` entry) of the release folder."""
    pipeline = read_pipeline_json(folder)
    missing = missing_release_files(folder, pipeline)
    if missing:
        raise WeightsMissing(f"{folder} lacks: {', '.join(missing)}", hint="Download the model again.")
    if pipeline_name not in pipeline.models:
        raise WeightsInvalid(f"{Path(folder) / 'pipeline.json'} lists no '{pipeline_name}'", hint=_REDOWNLOAD)
    base = Path(folder) / pipeline.models[pipeline_name]
    for ext in (".json", ".safetensors"):
        check_inside(folder, base.with_name(base.name + ext))
    return load_checkpoint(base, device, dtype)


def dinov2_config_from_hf(folder: Path) -> DinoV2Config:
    """The ``DinoV2Config`` of a transformers folder (``config.json``); the ViT-L/14-reg4 one if absent."""
    import dataclasses

    base = VARIANTS["dinov2_vitl14_reg"]
    assert isinstance(base, DinoV2Config)
    path = Path(folder) / "config.json"
    if not path.is_file():
        return base
    try:
        hf = _section(read_json_file(path), "config")
        config = dataclasses.replace(
            base,
            img_size=hf.get("image_size", base.img_size),
            patch_size=hf.get("patch_size", base.patch_size),
            embed_dim=hf["hidden_size"],
            depth=hf["num_hidden_layers"],
            num_heads=hf["num_attention_heads"],
            num_register_tokens=hf.get("num_register_tokens", base.num_register_tokens),
            mlp_ratio=hf.get("mlp_ratio", base.mlp_ratio),
        )
        check_values(config)  # types and ranges, before anything is built
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise WeightsInvalid(f"{path} is malformed: {type(exc).__name__}: {exc}", hint=_REDOWNLOAD) from None
    return config


def load_dinov2(
    folder: Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> nn.Module:
    """Load DINOv2 from a Hugging Face ``dinov2-with-registers`` folder (``model.safetensors``), renamed.

    The release runs it in float32 (the default); another ``dtype`` casts the whole network.
    """
    from .dinov2 import convert_hf_state_dict

    path = Path(folder) / "model.safetensors"
    check_inside(folder, path)
    layout = read_layout(path)
    check_dtypes(layout, set(layout), path)  # every DINOv2 tensor is a floating-point weight
    header = {k: shape for k, (shape, _) in layout.items()}
    model = _build(dinov2_config_from_hf(folder), Path(folder) / "config.json")
    as_meta = {k: torch.empty(s, device="meta") for k, s in header.items()}
    try:
        converted = convert_hf_state_dict(as_meta)
    except KeyError as exc:
        raise WeightsInvalid(
            f"{path} is not a DINOv2-with-registers checkpoint: {exc}", hint=_REDOWNLOAD
        ) from None
    check_tensors(expected_shapes(model), {k: tuple(v.shape) for k, v in converted.items()}, path)
    raw = _read_tensors(path, {k: torch.empty(0, dtype=dtype) for k in header}, device)
    return _materialise(model, convert_hf_state_dict(raw))
