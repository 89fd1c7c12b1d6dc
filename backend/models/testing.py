"""Test helpers: write a release-layout weights folder with random weights and tiny configs.

Used by this package's tests and by the engine tests: ``write_release_folder`` gives a folder that
``loading.load_network`` / ``read_pipeline_json`` accept exactly like the official one, and
``write_dinov2_folder`` a Hugging Face style DINOv2 folder for ``loading.load_dinov2``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from .configs import VARIANTS, DinoV2Config, NetworkConfig, SSDecoderConfig, release_json
from .loading import PIPELINE_NAMES, build_network

TINY_VARIANTS: dict[str, str] = {
    "sparse_structure_flow_model": "tiny_ss_flow",
    "sparse_structure_decoder": "tiny_ss_dec",
    "slat_flow_model": "tiny_slat_flow",
    "slat_decoder_mesh": "tiny_mesh_dec",
}
"Pipeline name -> variant written by default."

SLAT_MEAN = (
    -2.1687545776367188,
    -0.004347046371549368,
    -0.13352349400520325,
    -0.08418072760105133,
    -0.5271206498146057,
    0.7238689064979553,
    -1.1414450407028198,
    1.2039363384246826,
)
SLAT_STD = (
    2.377650737762451,
    2.386378288269043,
    2.124418020248413,
    2.1748552322387695,
    2.663944721221924,
    2.371192216873169,
    2.6217446327209473,
    2.684523105621338,
)
_SAMPLER = {
    "name": "FlowEulerGuidanceIntervalSampler",
    "args": {"sigma_min": 1e-5},
    "params": {"steps": 25, "cfg_strength": 5.0, "cfg_interval": [0.5, 1.0], "rescale_t": 3.0},
}


def random_state(model: nn.Module, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Random float32 weights shaped like ``model``'s state dict (fan-in scaled, norms near 1).

    Buffers (the SS flow's ``pos_emb``) keep the model's own values.
    """
    state: dict[str, torch.Tensor] = {}
    buffers = {name for name, _ in model.named_buffers()}
    for key, ref in model.state_dict().items():
        if key in buffers:
            state[key] = ref.detach().float().clone()
        elif ref.dim() >= 2:
            fan_in = max(1, ref[0].numel())
            state[key] = torch.randn(ref.shape, generator=generator) / math.sqrt(fan_in)
        elif key.endswith(("norm1.weight", "norm2.weight", "norm.weight", ".gamma")) or _is_norm_weight(key):
            state[key] = 1.0 + 0.05 * torch.randn(ref.shape, generator=generator)
        else:
            state[key] = 0.02 * torch.randn(ref.shape, generator=generator)
    return state


def _is_norm_weight(key: str) -> bool:
    return key.endswith(".weight") and any(
        p in key for p in ("act_layers.0.", "out_layers.1.", "out_layer.0.")
    )


def random_network(config: NetworkConfig, seed: int = 0) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A CPU float32 network of ``config`` with random weights, and its state dict."""
    model = build_network(config, "cpu")
    state = random_state(model, torch.Generator().manual_seed(seed))
    model.load_state_dict(state, strict=True)
    return model.eval(), state


def _tune_occupancy(model: nn.Module, state: dict[str, torch.Tensor], occupancy: float, seed: int) -> None:
    """Shift the SS decoder's output bias so ~``occupancy`` of the 64^3 cells of N(0,1) latents are > 0."""
    cfg = model.config
    assert isinstance(cfg, SSDecoderConfig)
    latent = torch.randn(
        1, cfg.latent_channels, 16, 16, 16, generator=torch.Generator().manual_seed(seed + 1)
    )
    with torch.no_grad():
        logits = model(latent).flatten()  # [64^3]
    threshold = torch.quantile(logits[:: max(1, logits.numel() // 100_000)], 1.0 - occupancy)
    state["out_layer.2.bias"] = state["out_layer.2.bias"] - threshold


def write_checkpoint(
    base: Path, config: NetworkConfig, seed: int = 0, occupancy: float | None = None
) -> None:
    """Write ``<base>.json`` and ``<base>.safetensors`` (random weights) in the release format."""
    from safetensors.torch import save_file

    model, state = random_network(config, seed)
    if occupancy is not None and isinstance(config, SSDecoderConfig):
        _tune_occupancy(model, state, occupancy, seed)
    base.parent.mkdir(parents=True, exist_ok=True)
    base.with_name(base.name + ".json").write_text(
        json.dumps(release_json(config), indent=2), encoding="utf-8"
    )
    save_file({k: v.contiguous() for k, v in state.items()}, str(base.with_name(base.name + ".safetensors")))


def write_release_folder(
    folder: Path, variants: Mapping[str, str] | None = None, seed: int = 0, occupancy: float = 0.002
) -> Path:
    """Write a trellis-normal-v0-1 style folder: pipeline.json + ckpts/<variant>.{json,safetensors}.

    ``variants`` maps pipeline names to ``configs.VARIANTS`` names (default ``TINY_VARIANTS``; missing
    names take the tiny default). ``occupancy`` tunes the SS decoder so roughly that fraction of the
    64^3 grid is occupied for N(0, 1) latents (keeps the later stages small). Returns ``folder``.
    """
    folder = Path(folder)
    chosen = {**TINY_VARIANTS, **(variants or {})}
    for i, name in enumerate(PIPELINE_NAMES):
        write_checkpoint(folder / "ckpts" / chosen[name], VARIANTS[chosen[name]], seed + i, occupancy)
    pipeline = {
        "name": "TrellisImageTo3DPipeline",
        "args": {
            "models": {name: f"ckpts/{chosen[name]}" for name in PIPELINE_NAMES},
            "sparse_structure_sampler": _SAMPLER,
            "slat_sampler": _SAMPLER,
            "slat_normalization": {"mean": list(SLAT_MEAN), "std": list(SLAT_STD)},
            "image_cond_model": "dinov2_vitl14_reg",
        },
    }
    (folder / "pipeline.json").write_text(json.dumps(pipeline, indent=2), encoding="utf-8")
    return folder


def write_dinov2_folder(folder: Path, variant: str = "tiny_dinov2", seed: int = 0) -> Path:
    """Write a Hugging Face style DINOv2-with-registers folder (config.json + model.safetensors)."""
    from safetensors.torch import save_file

    from .dinov2 import to_hf_state_dict

    config = VARIANTS[variant]
    if not isinstance(config, DinoV2Config):
        raise ValueError(f"{variant} is not a DINOv2 variant")
    _, state = random_network(config, seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    hf_config = {
        "model_type": "dinov2_with_registers",
        "hidden_size": config.embed_dim,
        "num_hidden_layers": config.depth,
        "num_attention_heads": config.num_heads,
        "image_size": config.img_size,
        "patch_size": config.patch_size,
        "num_register_tokens": config.num_register_tokens,
        "mlp_ratio": config.mlp_ratio,
        "layer_norm_eps": 1e-6,
        "hidden_act": "gelu",
    }
    (folder / "config.json").write_text(json.dumps(hf_config, indent=2), encoding="utf-8")
    save_file(to_hf_state_dict(state), str(folder / "model.safetensors"))
    return folder
