"""IS-Net-style salient-object segmentation network (the layout of BRIA's RMBG-1.4 release).

A U^2-Net family network (Qin et al. 2020; Qin et al., "Highly Accurate Dichotomous Image Segmentation",
ECCV 2022): a strided stem, six encoder stages and five decoder stages, each a residual U-block (RSU) of a
given height, and one side output per stage. Only the first side output is the mask at inference, so the
other five side convolutions exist (their weights are in the checkpoint) but are not run.

Module names follow the published checkpoint key for key: ``conv_in``, ``stage1`` .. ``stage6``,
``stage5d`` .. ``stage1d``, ``side1`` .. ``side6``; inside a block ``rebnconvin``, ``rebnconv1`` ..
``rebnconv<height>``, ``rebnconv<height-1>d`` .. ``rebnconv1d``, each a conv (``conv_s1``) plus batch norm
(``bn_s1``) plus ReLU. Pooling layers hold no weights and are plain functions here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class IsNetConfig:
    in_channels: int = 3
    out_channels: int = 1
    width: float = 1.0
    "Channel multiplier (1.0 is the release; tests use small ones)."

    def ch(self, c: int) -> int:
        return max(1, int(c * self.width))


# (name, in, mid, out, height, dilated) at width 1.0: encoder, bottom, decoder (RMBG-1.4 / IS-Net)
STAGES = (
    ("stage1", 64, 32, 64, 7, False), ("stage2", 64, 32, 128, 6, False), ("stage3", 128, 64, 256, 5, False),
    ("stage4", 256, 128, 512, 4, False), ("stage5", 512, 256, 512, 4, True), ("stage6", 512, 256, 512, 4, True),
    ("stage5d", 1024, 256, 512, 4, True), ("stage4d", 1024, 128, 256, 4, False),
    ("stage3d", 512, 64, 128, 5, False), ("stage2d", 256, 32, 64, 6, False), ("stage1d", 128, 16, 64, 7, False),
)
SIDE_INPUTS = (64, 64, 128, 256, 512, 512)
"Channels feeding side1 .. side6 (stage1d, stage2d, stage3d, stage4d, stage5d, stage6)."


class ConvBnRelu(nn.Module):
    def __init__(self, cin: int, cout: int, dilation: int = 1) -> None:
        super().__init__()
        self.conv_s1 = nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation)
        self.bn_s1 = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn_s1(self.conv_s1(x)))


class ResidualUBlock(nn.Module):
    """RSU-``height``: a small U-Net inside a residual connection.

    Plain blocks halve the resolution between encoder levels (max-pool, ceil) and dilate only the bottom
    (2); dilated ("F") blocks keep the resolution and dilate 1, 2, 4, 8 instead.
    """

    def __init__(self, cin: int, mid: int, cout: int, height: int, dilated: bool) -> None:
        super().__init__()
        self.height, self.dilated = height, dilated
        self.rebnconvin = ConvBnRelu(cin, cout)
        for level in range(1, height + 1):
            dilation = 2 ** (level - 1) if dilated else (2 if level == height else 1)
            self.add_module(f"rebnconv{level}", ConvBnRelu(cout if level == 1 else mid, mid, dilation))
        for level in range(height - 1, 0, -1):
            dilation = 2 ** (level - 1) if dilated else 1
            self.add_module(f"rebnconv{level}d", ConvBnRelu(2 * mid, cout if level == 1 else mid, dilation))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top = self.rebnconvin(x)
        skips, h = [], top
        for level in range(1, self.height):  # encoder levels 1 .. height-1
            h = getattr(self, f"rebnconv{level}")(h)
            skips.append(h)
            if not self.dilated and level < self.height - 1:
                h = F.max_pool2d(h, 2, stride=2, ceil_mode=True)
        h = getattr(self, f"rebnconv{self.height}")(h)  # the bottom, dilated
        for level in range(self.height - 1, 0, -1):
            skip = skips[level - 1]
            h = getattr(self, f"rebnconv{level}d")(torch.cat([h, skip], 1))
            if not self.dilated and level > 1:
                h = _resize_like(h, skips[level - 2])
        return h + top


class IsNetSegmenter(nn.Module):
    """RGB [B, 3, H, W] (normalised) -> foreground probability [B, 1, H, W]."""

    def __init__(self, config: IsNetConfig) -> None:
        super().__init__()
        c = config.ch
        self.conv_in = nn.Conv2d(config.in_channels, c(64), 3, stride=2, padding=1)
        for name, cin, mid, cout, height, dilated in STAGES:
            self.add_module(name, ResidualUBlock(c(cin), c(mid), c(cout), height, dilated))
        for i, cin in enumerate(SIDE_INPUTS, 1):
            self.add_module(f"side{i}", nn.Conv2d(c(cin), config.out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)  # [B, 64, H/2, W/2]; the release defines pool_in but does not use it
        encoded = []
        for i in range(1, 7):
            h = getattr(self, f"stage{i}")(h)
            encoded.append(h)
            if i < 6:
                h = F.max_pool2d(h, 2, stride=2, ceil_mode=True)
        h = encoded[5]
        for i in range(5, 0, -1):  # decoder: stage5d .. stage1d
            h = getattr(self, f"stage{i}d")(torch.cat([_resize_like(h, encoded[i - 1]), encoded[i - 1]], 1))
        return torch.sigmoid(_resize_like(self.side1(h), x))


def _resize_like(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of ``x`` to ``target``'s height and width (as the release's ``_upsample_like``)."""
    if x.shape[-2:] == target.shape[-2:]:
        return x
    return F.interpolate(x, size=target.shape[-2:], mode="bilinear", align_corners=False)
