"""A diffusion prior for tiny CPU runs: pre-train the UNet as an epsilon-prediction denoiser, then copy its encoder.

The paper fine-tunes a UNet that Stable Diffusion (via StableNormal) pre-trained as a denoiser over every
timestep; the tiny starting release (``init.py``) has fresh streams instead. This module gives a tiny init that
prior, cheaply, so the noise-injection ablation can start both arms from a denoiser: the standard DDPM
objective on the data set's image latents (the cached ones the trainer uses: posterior mode x scaling)::

    x_t = sqrt(abar_t) * x_0 + sqrt(1 - abar_t) * eps,   t ~ U{0 .. 999},   eps ~ N(0, I)
    L   = mean((unet(x_t, t) - eps)^2)

with the schedule the injection uses (``objective.alphas_cumprod``) and the trainer's all-zero context. The
control branch then starts as a copy of the pre-trained encoder, as ControlNet starts from its base UNet.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .data import SampleFolder
from .export import split_states, write_release_folder
from .networks import CONTEXT_TOKENS, Networks, copy_encoder, load_networks
from .objective import TIMESTEPS, alphas_cumprod, inject_noise
from .trainer import encode


def denoiser_loss(unet: nn.Module, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
                  abar: torch.Tensor) -> torch.Tensor:
    """Epsilon-prediction MSE of ``unet`` on latents x0 [B, 4, h, w] diffused to timesteps t [B]."""
    context = x0.new_zeros(x0.shape[0], CONTEXT_TOKENS, int(unet.config.cross_attention_dim))  # [B, 1, D]
    pred = unet(inject_noise(x0, noise, t, abar), t, encoder_hidden_states=context, return_dict=False)[0]
    return (pred.float() - noise).square().mean()


def pretrain_denoiser(unet: nn.Module, latents: torch.Tensor, steps: int, seed: int, *, lr: float = 1e-3,
                      batch: int = 8, grad_clip: float = 1.0) -> list[float]:
    """Train ``unet`` in place as a denoiser of ``latents`` [N, 4, h, w] over all t; returns the losses."""
    if steps < 0 or batch < 1:
        raise ValueError(f"steps {steps} must be >= 0 and batch {batch} >= 1")
    generator = torch.Generator().manual_seed(seed)
    abar = alphas_cumprod()
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr)
    unet.train()
    losses = []
    for _ in range(steps):
        pick = torch.randint(len(latents), (batch,), generator=generator)
        t = torch.randint(TIMESTEPS, (batch,), generator=generator)
        noise = torch.randn(latents[pick].shape, generator=generator)
        loss = denoiser_loss(unet, latents[pick], t, noise, abar)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


@torch.no_grad()
def denoiser_error(unet: nn.Module, latents: torch.Tensor, timesteps: tuple[int, ...], seed: int = 0
                   ) -> dict[int, float]:
    """Epsilon MSE at each of ``timesteps`` on ``latents`` (fixed noise; 1.0 = predicting zero)."""
    abar = alphas_cumprod()
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(latents.shape, generator=generator)
    out = {}
    for step in timesteps:
        t = torch.full((len(latents),), step, dtype=torch.long)
        out[step] = float(denoiser_loss(unet, latents, t, noise, abar))
    return out


def image_latents(nets: Networks, data: Path) -> torch.Tensor:
    """The cached image latents [N, 4, h, w] of ``data``'s real and synthetic splits (those present)."""
    parts = []
    for split in ("real", "synthetic"):
        if (Path(data) / split).is_dir():
            pixels, _, _ = SampleFolder(Path(data) / split).stacked()
            parts.append(encode(nets.vae, pixels, nets.scaling_factor))
    if not parts:
        raise ValueError(f"{data} holds neither real/ nor synthetic/")
    return torch.cat(parts)


def write_pretrained_init(init: Path, data: Path, folder: Path, steps: int, seed: int, *, lr: float = 1e-3,
                          batch: int = 8) -> tuple[Path, list[float]]:
    """``init`` with its UNet pre-trained as a denoiser on ``data``'s image latents and the control branch
    re-copied from it, written to ``folder`` (same VAE and configs); returns the folder and the losses."""
    nets = load_networks(Path(init))
    torch.manual_seed(seed)
    losses = pretrain_denoiser(nets.streams.unet, image_latents(nets, data), steps, seed, lr=lr, batch=batch)
    copy_encoder(nets.streams.unet, nets.streams.controlnet)
    states = split_states(nets.streams.state_dict(), nets.vae.state_dict())
    write_release_folder(Path(folder), nets.configs, nets.model_index, states, dtype="fp32")
    return Path(folder), losses
