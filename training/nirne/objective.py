"""Noise injection and the NiRNE regression loss.

Noise injection (the paper's high-frequency stream). The UNet sees the image latent diffused to a timestep
of Stable Diffusion's DDPM schedule (``scaled_linear``, betas 0.00085 to 0.012 over 1000 steps, the schedule
the YOSO UNet was pre-trained with)::

    noisy = sqrt(abar_t) * clean + sqrt(1 - abar_t) * eps,   t ~ U{0 .. noise_t_max},   eps ~ N(0, I)

and gets ``t`` as its timestep, while the control branch always sees the clean latent at t = 0. Inference is
t = 0 for both (the release pipeline), the low-noise end of what training covered. The paper does not state the
range of t; we choose a uniform draw up to ``noise_t_max`` (400 by default) and test that 0 turns the injection
off exactly. On this schedule abar_t is 0.89 at t = 100, 0.75 at 200, 0.59 at 300 and 0.42 at 400: the noise's
standard deviation sqrt(1 - abar) passes the signal's sqrt(abar) near t = 330, so t <= 400 reaches latents that
are mostly noise (the clean stream still sees the image, so the regression stays well posed).

Loss (regression, not denoising: the target is the clean normal latent, whatever t)::

    L = latent_weight * mean((pred - z_normal)^2)
      + pixel_weight  * mean_over_mask(1 - cos(normalize(vae.decode(pred / s)), n_gt))

Latent MSE is YOSO/StableNormal's regression target; the optional pixel term supervises the decoded normal
map with the angular (cosine) loss used for normal estimation, through the frozen VAE decoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

TIMESTEPS = 1000
BETA_START, BETA_END = 0.00085, 0.012


def alphas_cumprod(device: torch.device | str = "cpu") -> torch.Tensor:
    """abar_t of the scaled-linear DDPM schedule, [1000] float32."""
    betas = torch.linspace(BETA_START ** 0.5, BETA_END ** 0.5, TIMESTEPS, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0).to(device, torch.float32)


def inject_noise(clean: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """The noisy-stream input: clean [B, C, h, w] diffused to integer timesteps t [B]."""
    a = abar[t].view(-1, 1, 1, 1)
    return a.sqrt() * clean + (1.0 - a).sqrt() * noise


@dataclass(frozen=True)
class Draw:
    t: int
    noise: torch.Tensor  # [C, h, w]


def draw_noise(seed: int, shape: tuple[int, ...], t_max: int) -> Draw:
    """The timestep and noise of one sample, from its own counter-based seed. ``t_max`` 0: no injection."""
    generator = torch.Generator().manual_seed(seed)
    t = int(torch.randint(t_max + 1, (1,), generator=generator)) if t_max > 0 else 0
    noise = torch.randn(shape, generator=generator) if t_max > 0 else torch.zeros(shape)
    return Draw(t, noise)


def angular_loss(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean ``1 - cos`` between normal maps [B, 3, H, W] over mask [B, H, W] (pred normalised here)."""
    unit = pred / torch.linalg.vector_norm(pred, dim=1, keepdim=True).clamp(min=1e-6)
    cos = (unit * gt).sum(dim=1)  # [B, H, W]
    weights = mask.float()
    return ((1.0 - cos) * weights).sum() / weights.sum().clamp(min=1.0)


def regression_loss(pred: torch.Tensor, target: torch.Tensor, vae: nn.Module | None, scaling: float,
                    normals: torch.Tensor, mask: torch.Tensor, latent_weight: float,
                    pixel_weight: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The weighted latent MSE and pixel angular loss of predicted normal latents [B, 4, h, w]."""
    pred = pred.float()
    latent = (pred - target).square().mean()
    loss = latent_weight * latent
    terms = {"latent_mse": latent.detach()}
    if pixel_weight > 0 and vae is not None:
        decoded = vae.decode(pred / scaling, return_dict=False)[0].float()  # [B, 3, H, W]
        pixel = angular_loss(decoded, normals, mask)
        loss = loss + pixel_weight * pixel
        terms["pixel_angular"] = pixel.detach()
    return loss, terms
