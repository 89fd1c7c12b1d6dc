"""A tiny starting release for CPU runs: a VAE fitted to the data set's images and normal maps, fresh streams.

The real trainer starts from the release (``[model] init``), whose Stable Diffusion VAE already encodes
images and normal maps faithfully. A fresh tiny VAE does not, and a frozen VAE that cannot reconstruct normal
maps would bound every NE the test measures, so the tiny runs first fit one (plain reconstruction, the
posterior mean, a small KL term) and then set ``scaling_factor`` to one over the latents' standard deviation,
as Stable Diffusion chose its 0.18215.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .data import SampleFolder
from .export import split_states, write_release_folder
from .networks import fresh_networks


def fit_vae(vae: nn.Module, images: torch.Tensor, steps: int, seed: int, lr: float = 2e-3,
            batch: int = 8) -> list[float]:
    """Fit ``vae`` in place to reconstruct ``images`` [N, 3, H, W] in [-1, 1]; returns the losses."""
    generator = torch.Generator().manual_seed(seed)
    vae.train().requires_grad_(True)
    optimizer = torch.optim.Adam(vae.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        pick = torch.randint(len(images), (min(batch, len(images)),), generator=generator)
        x = images[pick]
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.mean).sample
        loss = (recon - x).abs().mean() + 1e-6 * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    vae.eval().requires_grad_(False)
    return losses


@torch.no_grad()
def latent_scale(vae: nn.Module, images: torch.Tensor) -> float:
    """One over the standard deviation of the posterior means of ``images``."""
    latents = vae.encode(images).latent_dist.mean
    return float(1.0 / latents.std().clamp(min=1e-6))


def write_tiny_init(folder: Path, data: Path, *, vae_steps: int = 300, seed: int = 0) -> Path:
    """A tiny yoso-normal folder whose VAE is fitted to ``data``'s images and normal maps (both splits)."""
    pixels, normals = [], []
    for split in ("real", "synthetic"):
        if (Path(data) / split).is_dir():
            p, n, _ = SampleFolder(Path(data) / split).stacked()
            pixels.append(p)
            normals.append(n)
    if not pixels:
        raise ValueError(f"{data} holds neither real/ nor synthetic/")
    images = torch.cat([*pixels, *normals])  # images and normal maps: both go through the VAE
    nets = fresh_networks("tiny", seed)
    torch.manual_seed(seed)
    fit_vae(nets.vae, images, vae_steps, seed)
    scale = latent_scale(nets.vae, images)
    nets.vae.register_to_config(scaling_factor=scale)
    nets.configs["vae"] = {**nets.configs["vae"], "scaling_factor": scale}
    states = split_states(nets.streams.state_dict(), nets.vae.state_dict())
    return write_release_folder(Path(folder), nets.configs, nets.model_index, states, dtype="fp32")
