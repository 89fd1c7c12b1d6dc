"""Exponential moving average of a model's parameters (float32 shadows), updated after each optimizer step."""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    """``shadow <- rate * shadow + (1 - rate) * param`` for every trainable parameter."""

    def __init__(self, model: nn.Module, rate: float) -> None:
        self.rate = rate
        self.shadow = {name: p.detach().float().clone() for name, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for name, p in model.named_parameters():
            if name in self.shadow:
                self.shadow[name].mul_(self.rate).add_(p.detach().float(), alpha=1.0 - self.rate)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if set(state) != set(self.shadow):
            raise ValueError("the EMA state does not match the model's parameters")
        for name, value in state.items():
            self.shadow[name].copy_(value)

    def model_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """``model``'s full state dict (buffers included) with the averaged parameters in place of its own."""
        return {k: self.shadow.get(k, v).detach().float() for k, v in model.state_dict().items()}
