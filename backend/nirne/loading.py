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

import json
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


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; a damaged file gives ``WeightsInvalid``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsInvalid(f"Cannot read {path}: {exc}", hint=_REDOWNLOAD) from None
    if not isinstance(data, dict):
        raise WeightsInvalid(f"{path} is not a JSON object.", hint=_REDOWNLOAD)
    return data


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
    except (TypeError, ValueError, KeyError) as exc:
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
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in state and not k.startswith(optional)]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != expected[k]]
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

    model = build_component(name, read_json(folder / name / "config.json"))
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
    device = torch.device(device)
    nets = {name: load_component(folder, name, files[name], device, dtype) for name in COMPONENTS}
    if zero_context_shortcut:
        from .zero_context import install_zero_context

        install_zero_context(nets["unet"])
        install_zero_context(nets["controlnet"])
    return NirneModels(nets["unet"], nets["vae"], nets["controlnet"], device, dtype)
