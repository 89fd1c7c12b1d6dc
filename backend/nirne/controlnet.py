"""``ControlNetVAEModel``: the YOSO control branch, a diffusers ``ControlNetModel`` with its own forward.

The release ships this class as ``controlnet/controlnetvae.py`` and loads it with ``trust_remote_code``;
we never execute that file. Its forward, as read from the public copy, differs from ``ControlNetModel``:

- the latent goes straight into ``conv_in``: there is no control image, and ``controlnet_cond_embedding``
  is never called;
- the residuals returned are the raw down-block outputs (``conv_in`` output plus every resnet /
  downsampler output, 12 tensors for SD2) and the raw mid-block output: the zero-convs
  ``controlnet_down_blocks`` and ``controlnet_mid_block`` are skipped;
- the outputs are still multiplied by ``conditioning_scale`` (1.0 in the release).

The unused modules stay in the tree so the module keys equal the checkpoint keys (364,228,240 parameters
for the release config, of which 12,566,160 are never used).
"""

from __future__ import annotations

import torch
from diffusers import ControlNetModel

UNUSED_PREFIXES = ("controlnet_cond_embedding.", "controlnet_down_blocks.", "controlnet_mid_block.")
"Checkpoint keys the YOSO forward never reads; a file without them still loads."


class ControlNetVAEModel(ControlNetModel):
    """SD2-style ControlNet whose forward maps an image latent to UNet residuals (see module docstring)."""

    def forward(  # type: ignore[override]
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | int,
        encoder_hidden_states: torch.Tensor,
        conditioning_scale: float = 1.0,
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Latent [B, 4, h, w], timestep, context [B, T, D] -> (12 down residuals, mid residual)."""
        self._check_supported()
        emb = self._time_embedding(timestep, sample)  # [B, 4 * C0]
        hidden = self.conv_in(sample)  # [B, C0, h, w]
        residuals = [hidden]
        for block in self.down_blocks:
            if getattr(block, "has_cross_attention", False):
                hidden, outputs = block(hidden_states=hidden, temb=emb,
                                        encoder_hidden_states=encoder_hidden_states)
            else:
                hidden, outputs = block(hidden_states=hidden, temb=emb)
            residuals.extend(outputs)
        if getattr(self.mid_block, "has_cross_attention", False):
            hidden = self.mid_block(hidden, emb, encoder_hidden_states=encoder_hidden_states)
        else:
            hidden = self.mid_block(hidden, emb)  # [B, C3, h / 8, w / 8]
        return [r * conditioning_scale for r in residuals], hidden * conditioning_scale

    def _time_embedding(self, timestep: torch.Tensor | int, sample: torch.Tensor) -> torch.Tensor:
        """Sinusoidal projection + MLP of the timestep, broadcast to the batch (as ``ControlNetModel``)."""
        t = torch.as_tensor(timestep, device=sample.device)
        if t.ndim == 0:
            t = t[None]
        t = t.expand(sample.shape[0])  # [B]
        t_emb = self.time_proj(t).to(dtype=sample.dtype)  # the projection is float32; match the weights
        return self.time_embedding(t_emb)  # [B, 4 * C0]

    def _check_supported(self) -> None:
        extras = (getattr(self, "class_embedding", None), getattr(self, "add_embedding", None))
        if any(e is not None for e in extras):
            raise NotImplementedError("ControlNetVAEModel supports SD2-style configs (no extra embeddings).")
