"""Load the YOSO / NiRNE release folder (diffusers layout) without ``trust_remote_code``.

Layout of ``Stable-X/yoso-normal-v1-8-1``::

    <folder>/model_index.json
    <folder>/unet/config.json        <folder>/unet/diffusion_pytorch_model.fp16.safetensors
    <folder>/vae/config.json         <folder>/vae/diffusion_pytorch_model.fp16.safetensors
    <folder>/controlnet/config.json  <folder>/controlnet/diffusion_pytorch_model.fp16.safetensors
                                     (+ controlnetvae.py, which is never read)

Each network is built from its ``config.json`` on the meta device with the diffusers class (our own
``ControlNetVAEModel`` for the control branch), its safetensors file is checked key by key and shape by
shape, and the tensors are assigned in place. Only ``.safetensors`` files are ever opened.
Tested with diffusers 0.39.0 (the range ``requirements/backend.txt`` pins: ``diffusers>=0.30,<0.40``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from backend.errors import WeightsInvalid, WeightsMissing

COMPONENTS = ("unet", "vae", "controlnet")
WEIGHT_NAMES = ("diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.safetensors")
"Weight file names in order of preference: the fp16 variant the release ships, then the plain name."
_REDOWNLOAD = "Delete the yoso-normal folder and download it again (python -m backend download yoso-normal)."


@dataclass
class NirneModels:
    """The three YOSO networks on one device and dtype, ready for inference."""

    unet: nn.Module  # diffusers UNet2DConditionModel
    vae: nn.Module  # diffusers AutoencoderKL
    controlnet: nn.Module  # ControlNetVAEModel
    device: torch.device
    dtype: torch.dtype

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def context_dim(self) -> int:
        return int(self.unet.config.cross_attention_dim)


def component_files(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """The weights file of each component, and every required file that is missing (relative paths)."""
    missing = [] if (folder / "model_index.json").is_file() else ["model_index.json"]
    found: dict[str, Path] = {}
    for name in COMPONENTS:
        if not (folder / name / "config.json").is_file():
            missing.append(f"{name}/config.json")
        weights = next((folder / name / w for w in WEIGHT_NAMES if (folder / name / w).is_file()), None)
        if weights is None:
            missing.append(f"{name}/{WEIGHT_NAMES[0]}")
        else:
            found[name] = weights
    return found, missing


MAX_INT = 16384
"Largest integer a component config may hold (channels, sizes); the release's largest is 1280."
MAX_LIST = 16
COUNT_BOUNDS = {"layers_per_block": (1, 16), "transformer_layers_per_block": (1, 16), "norm_num_groups": (1, 1024)}
"Loop counts a hostile config could inflate: refused before any module is built."
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path`` (at most 1 MB); a damaged file gives ``WeightsInvalid``."""
    from backend.models.configs import read_json_file

    try:
        data = read_json_file(path)
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise WeightsInvalid(f"Cannot read {path}: {exc}", hint=_REDOWNLOAD) from None
    if not isinstance(data, dict):
        raise WeightsInvalid(f"{path} is not a JSON object.", hint=_REDOWNLOAD)
    return data


def check_config(config: dict[str, Any], path: Path) -> None:
    """Every value of a component config is a plain JSON value in sane bounds (``WeightsInvalid`` if not)."""
    for key, value in config.items():
        problem = _value_problem(value, depth=0)
        low, high = COUNT_BOUNDS.get(key, (None, None))
        if not problem and low is not None:
            counts = value if isinstance(value, list) else [value]
            if not all(isinstance(c, int) and not isinstance(c, bool) and low <= c <= high for c in counts):
                problem = f"must be an integer (or list of them) in [{low}, {high}]"
        if not problem and key == "block_out_channels":
            problem = _channels_problem(value, config.get("norm_num_groups"))
        if problem:
            raise WeightsInvalid(f"{path}: {key}={value!r} {problem}.", hint=_REDOWNLOAD)


def _value_problem(value: Any, depth: int) -> str:
    if value is None or isinstance(value, bool):
        return ""
    if isinstance(value, int):
        return "" if abs(value) <= MAX_INT else f"is beyond the supported {MAX_INT}"
    if isinstance(value, float):
        return "" if math.isfinite(value) and abs(value) <= 1e6 else "is not a sane finite number"
    if isinstance(value, str):
        return "" if len(value) <= 256 else "is too long"
    if isinstance(value, list) and depth < 2 and len(value) <= MAX_LIST:
        return next((p for p in (_value_problem(v, depth + 1) for v in value) if p), "")
    return "is not a supported value (nested objects, long lists)"


def _channels_problem(value: Any, groups: Any) -> str:
    if not isinstance(value, list) or not value or not all(isinstance(c, int) and c >= 1 for c in value):
        return "must be a list of positive integers"
    if isinstance(groups, int) and groups >= 1 and any(c % groups for c in value):
        return f"must be multiples of norm_num_groups={groups}"
    return ""


def check_model_index(index: dict[str, Any], path: Path) -> None:
    """The pipeline index must list the three components the YOSO pipeline needs."""
    absent = [name for name in COMPONENTS if name not in index]
    if absent:
        raise WeightsInvalid(f"{path} does not list {', '.join(absent)}; this is not a YOSO normal folder.",
                             hint="Point the backend at the Stable-X/yoso-normal-v1-8-1 folder.")


def build_component(name: str, config: dict[str, Any], device: torch.device | str = "meta") -> nn.Module:
    """The diffusers network of component ``name`` for ``config`` (``meta``: no memory, no init)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from .controlnet import ControlNetVAEModel

    classes: dict[str, Any] = {
        "unet": UNet2DConditionModel, "vae": AutoencoderKL, "controlnet": ControlNetVAEModel}
    try:
        with torch.device(device):
            return classes[name].from_config(config)
    except (TypeError, ValueError, KeyError, RuntimeError, ZeroDivisionError, AttributeError) as exc:
        raise WeightsInvalid(f"The {name} config cannot build a network: {exc}", hint=_REDOWNLOAD) from None


def rename_legacy_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map the pre-0.15 diffusers VAE attention names (query/key/value/proj_attn) to the current ones."""
    table = {".query.": ".to_q.", ".key.": ".to_k.", ".value.": ".to_v.", ".proj_attn.": ".to_out.0."}
    renamed = {}
    for key, value in state.items():
        for old, new in table.items():
            if ".attentions." in key and old in key:
                key = key.replace(old, new)
        renamed[key] = value
    return renamed


def check_state(model: nn.Module, state: dict[str, torch.Tensor], path: Path,
                optional: tuple[str, ...] = ()) -> None:
    """Every key of ``model`` present with its shape (bar ``optional`` prefixes), and no extra key."""
    targets = model.state_dict()
    expected = {k: tuple(v.shape) for k, v in targets.items()}
    missing = [k for k in expected if k not in state and not k.startswith(optional)]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != expected[k]]
    typed = next((k for k, v in targets.items()
                  if k in state and v.is_floating_point() and state[k].dtype not in FLOAT_DTYPES), None)
    if typed is not None and not (missing or unexpected or wrong):
        raise WeightsInvalid(f"{path}: tensor '{typed}' is {str(state[typed].dtype).removeprefix('torch.')}, "
                             "expected float32, float16 or bfloat16.", hint=_REDOWNLOAD)
    if missing or unexpected or wrong:
        if missing:
            first = f"missing key '{missing[0]}'"
        elif unexpected:
            first = f"unexpected key '{unexpected[0]}'"
        else:
            first = f"'{wrong[0]}' has shape {tuple(state[wrong[0]].shape)}, expected {expected[wrong[0]]}"
        counts = f"{len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} wrong shapes"
        raise WeightsInvalid(f"{path} does not match its config: {first} ({counts}).", hint=_REDOWNLOAD)


def load_component(folder: Path, name: str, weights: Path, device: torch.device,
                   dtype: torch.dtype) -> nn.Module:
    """Build component ``name`` on the meta device, load its safetensors strictly, move it to ``device``."""
    from backend.weights import load_safetensors

    from .controlnet import UNUSED_PREFIXES

    config_path = folder / name / "config.json"
    config = read_json(config_path)
    check_config(config, config_path)
    model = build_component(name, config)
    state = rename_legacy_keys(load_safetensors(weights))
    optional = UNUSED_PREFIXES if name == "controlnet" else ()
    check_state(model, state, weights, optional)
    # Cast tensor by tensor, dropping each source as we go (no second full copy), before assigning:
    # ModelMixin.to(dtype) afterwards would also work but warns on every call.
    model.load_state_dict({k: state.pop(k).to(dtype) for k in list(state)}, strict=False, assign=True)
    _materialize_unloaded(model, dtype)
    return model.to(device=device).eval().requires_grad_(False)


def _materialize_unloaded(model: nn.Module, dtype: torch.dtype) -> None:
    """Zero-fill parameters left on the meta device (only the unused ControlNet modules can be)."""
    for module in model.modules():
        for key, param in list(module._parameters.items()):
            if param is not None and param.is_meta:
                module._parameters[key] = nn.Parameter(torch.zeros(param.shape, dtype=dtype),
                                                       requires_grad=False)
        for key, buf in list(module._buffers.items()):
            if buf is not None and buf.is_meta:
                module._buffers[key] = torch.zeros(buf.shape, dtype=buf.dtype)


def load_nirne(folder: Path | str, device: torch.device | str, dtype: torch.dtype,
               zero_context_shortcut: bool = True) -> NirneModels:
    """Load the three networks of a yoso-normal release folder onto ``device`` in ``dtype``.

    Raises ``WeightsMissing`` naming every missing file, ``WeightsInvalid`` for a damaged or mismatched one.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise WeightsMissing(f"The NiRNE weights folder does not exist: {folder}", hint=_REDOWNLOAD)
    files, missing = component_files(folder)
    if missing:
        raise WeightsMissing(f"The NiRNE weights folder {folder} lacks: {', '.join(missing)}.",
                             hint=_REDOWNLOAD)
    check_model_index(read_json(folder / "model_index.json"), folder / "model_index.json")
    from backend.models.loading import check_inside

    for path in files.values():
        check_inside(folder, path)
    device = torch.device(device)
    nets = {name: load_component(folder, name, files[name], device, dtype) for name in COMPONENTS}
    if zero_context_shortcut:
        from .zero_context import install_zero_context

        install_zero_context(nets["unet"])
        install_zero_context(nets["controlnet"])
    return NirneModels(nets["unet"], nets["vae"], nets["controlnet"], device, dtype)
