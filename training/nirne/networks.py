"""The YOSO networks as the trainer holds them: the two trainable streams and the frozen VAE.

``DualStream`` wraps the control branch (the *clean* stream: it sees the clean image latent, the low
frequencies) and the UNet (the *noisy* stream: it sees the image latent with injected noise, the high
frequencies); its output is the predicted normal latent. At inference (``backend/nirne/pipeline.py``) both get
the clean latent at t = 0, so a trained ``DualStream`` is exactly what the engine runs.

Parameters that never receive a gradient are frozen once, here, so DDP needs no unused-parameter search:
the control branch's zero-convs and cond-embedding (the YOSO forward skips them) and, with the all-zero
text context, the query/key/value projections of every cross-attention and the norm before it (its output is
``to_out`` bias alone). ``freeze_unreached`` finds them with one probe pass, so no name list can go stale.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from backend.nirne.loading import COMPONENTS, build_component, load_nirne, read_json
from backend.nirne.zero_context import install_zero_context

_BLOCKS = {"block_out_channels": [32, 64], "layers_per_block": 1, "norm_num_groups": 8,
           "cross_attention_dim": 16, "attention_head_dim": [2, 4], "use_linear_projection": True}
TINY: dict[str, dict[str, Any]] = {
    "unet": {**_BLOCKS, "in_channels": 4, "out_channels": 4, "sample_size": 32,
             "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
             "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"]},
    "controlnet": {**_BLOCKS, "in_channels": 4, "conditioning_embedding_out_channels": [8, 16],
                   "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"]},
    "vae": {"block_out_channels": [8, 16, 16], "layers_per_block": 1, "norm_num_groups": 4, "latent_channels": 4,
            "in_channels": 3, "out_channels": 3, "sample_size": 64, "mid_block_add_attention": False,
            "down_block_types": ["DownEncoderBlock2D"] * 3, "up_block_types": ["UpDecoderBlock2D"] * 3},
}
"""The tiny preset: a 2-level UNet / ControlNet (32, 64 channels) and a 3-level VAE without mid attention
(latent = image / 4); sized for a 2-core CPU, 64 px images, 16 px latents."""
CLASS_NAMES = {"unet": "UNet2DConditionModel", "vae": "AutoencoderKL", "controlnet": "ControlNetVAEModel"}
CONTEXT_TOKENS = 1
"Tokens of the all-zero context in training (the count never changes the result, see zero_context.py)."


class DualStream(nn.Module):
    """Clean stream (control branch) + noisy stream (UNet) -> predicted normal latent."""

    def __init__(self, unet: nn.Module, controlnet: nn.Module) -> None:
        super().__init__()
        self.unet = unet
        self.controlnet = controlnet

    def forward(self, clean: torch.Tensor, noisy: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Clean and noisy image latents [B, 4, h, w], timesteps [B] -> normal latent [B, 4, h, w]."""
        dim = int(self.unet.config.cross_attention_dim)
        context = clean.new_zeros(clean.shape[0], CONTEXT_TOKENS, dim)  # [B, 1, D]
        down, mid = self.controlnet(clean, 0, encoder_hidden_states=context, conditioning_scale=1.0)
        return self.unet(noisy, t, encoder_hidden_states=context, down_block_additional_residuals=down,
                         mid_block_additional_residual=mid, return_dict=False)[0]


@dataclass
class Networks:
    """The trainable streams, the frozen VAE, and the component configs the export writes back."""

    streams: DualStream
    vae: nn.Module
    configs: dict[str, dict[str, Any]]
    model_index: dict[str, Any]

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)


def default_model_index() -> dict[str, Any]:
    """The release's ``model_index.json`` (YOSONormalsPipeline with its three components)."""
    return {"_class_name": "YOSONormalsPipeline", "_diffusers_version": "0.30.0",
            "controlnet": ["controlnetvae", "ControlNetVAEModel"], "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"]}


def fresh_networks(preset: str, seed: int, vae_state: dict[str, torch.Tensor] | None = None) -> Networks:
    """Seeded networks of ``preset``; the control branch starts as a copy of the UNet's encoder (ControlNet)."""
    if preset != "tiny":
        raise ValueError(f"unknown preset {preset!r} (known: tiny)")
    torch.manual_seed(seed)
    nets = {name: build_component(name, dict(TINY[name]), device="cpu") for name in COMPONENTS}
    copy_encoder(nets["unet"], nets["controlnet"])
    if vae_state is not None:
        nets["vae"].load_state_dict(vae_state, strict=True)
    configs = {name: {"_class_name": CLASS_NAMES[name], **TINY[name]} for name in COMPONENTS}
    return _prepare(nets, configs, default_model_index())


def load_networks(folder: Path) -> Networks:
    """The three networks of a yoso-normal release folder (loaded strictly by the backend), in float32."""
    folder = Path(folder)
    models = load_nirne(folder, "cpu", torch.float32, zero_context_shortcut=False)
    nets = {"unet": models.unet, "vae": models.vae, "controlnet": models.controlnet}
    configs = {name: read_json(folder / name / "config.json") for name in COMPONENTS}
    return _prepare(nets, configs, read_json(folder / "model_index.json"))


def _prepare(nets: dict[str, nn.Module], configs: dict[str, dict[str, Any]],
             index: dict[str, Any]) -> Networks:
    streams = DualStream(nets["unet"], nets["controlnet"]).float().train().requires_grad_(True)
    install_zero_context(streams)
    freeze_unreached(streams)
    vae = nets["vae"].float().eval().requires_grad_(False)
    return Networks(streams, vae, configs, index)


def freeze_unreached(streams: DualStream) -> list[str]:
    """Freeze the parameters one forward/backward pass leaves without a gradient; returns their names.

    These are the control branch's skipped modules and, with the zero context, each cross-attention's q/k/v
    and the norm feeding its query: their true gradient is zero, so freezing them changes nothing.
    """
    levels = len(streams.unet.config.block_out_channels) - 1
    side = 2 ** levels * 2
    channels = int(streams.unet.config.in_channels)
    probe = torch.zeros(1, channels, side, side)
    streams(probe, probe, torch.zeros(1, dtype=torch.long)).sum().backward()
    frozen = []
    for name, param in streams.named_parameters():
        if param.grad is None:
            param.requires_grad_(False)
            frozen.append(name)
        param.grad = None
    return frozen


def copy_encoder(unet: nn.Module, controlnet: nn.Module) -> int:
    """Copy every UNet tensor whose name and shape the control branch shares (its encoder); returns the count."""
    source = unet.state_dict()
    target = controlnet.state_dict()
    shared = {k: v for k, v in source.items() if k in target and target[k].shape == v.shape}
    controlnet.load_state_dict(shared, strict=False)
    return len(shared)
