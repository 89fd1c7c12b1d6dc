"""DINOv2 ViT-L/14 with 4 registers (the image condition encoder), named like the torch.hub release.

Tokens: ``[CLS, 4 registers, 37 x 37 patches]`` = 1374 at 518 px. The condition is the output of the
last block *before* the final ``norm``, followed by a parameter-free ``F.layer_norm`` (eps 1e-5), as
the release's ``encode_image``. Runs in float32. Weights come from the Hugging Face release
``facebook/dinov2-with-registers-large``; ``convert_hf_state_dict`` renames them to this tree.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from backend.nn.attention import attention

from .configs import DinoV2Config

if TYPE_CHECKING:
    import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DinoAttention(nn.Module):
    """Fused ``qkv`` and ``proj`` (keys of the hub release)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, L, C] -> [B, L, C]."""
        qkv = self.qkv(x).unflatten(-1, (3, self.num_heads, -1))  # [B, L, 3, H, D]
        h = attention(*qkv.unbind(dim=2))  # [B, L, H, D]
        return self.proj(h.flatten(-2))


class LayerScale(nn.Module):
    """Per-channel scale ``gamma``."""

    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class DinoMlp(nn.Module):
    """fc1 -> GELU (exact) -> fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class DinoBlock(nn.Module):
    """Pre-norm block with LayerScale: ``x += ls1(attn(norm1 x)); x += ls2(mlp(norm2 x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, ls_init: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = DinoAttention(dim, num_heads)
        self.ls1 = LayerScale(dim, ls_init)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = DinoMlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, ls_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Conv2d(3, C, k=p, stride=p), flattened to tokens. Key ``proj``."""

    def __init__(self, patch_size: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, H' * W', C]


class DinoV2(nn.Module):
    """``DinoVisionTransformer`` (hub ``dinov2_vitl14_reg``); ``forward`` gives the condition tokens."""

    def __init__(self, config: DinoV2Config) -> None:
        super().__init__()
        self.config = config
        c = config.embed_dim
        self.patch_embed = PatchEmbed(config.patch_size, c)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c))
        self.pos_embed = nn.Parameter(torch.zeros(1, config.grid**2 + 1, c))
        self.register_tokens = nn.Parameter(torch.zeros(1, config.num_register_tokens, c))
        self.mask_token = nn.Parameter(torch.zeros(1, c))  # unused at inference, present in the checkpoint
        self.blocks = nn.ModuleList(
            DinoBlock(c, config.num_heads, config.mlp_ratio, config.layerscale_init)
            for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(c, eps=1e-6)

    def position_embedding(self, rows: int, cols: int) -> torch.Tensor:
        """[1, 1 + rows * cols, C]; bicubic (antialiased) resize of the patch grid when it differs."""
        if rows * cols == self.pos_embed.shape[1] - 1 and rows == cols:
            return self.pos_embed
        m = self.config.grid
        patch = self.pos_embed[:, 1:].float().reshape(1, m, m, -1).permute(0, 3, 1, 2)  # [1, C, M, M]
        patch = F.interpolate(
            patch, size=(rows, cols), mode="bicubic", antialias=self.config.interpolate_antialias
        )
        patch = patch.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)  # [1, R * Cc, C]
        return torch.cat([self.pos_embed[:, :1], patch.to(self.pos_embed.dtype)], dim=1)

    def tokens(self, image: torch.Tensor) -> torch.Tensor:
        """image: [B, 3, H, W] normalised -> input tokens [B, 1 + R + N, C] (registers get no position)."""
        b, _, height, width = image.shape
        p = self.config.patch_size
        x = self.patch_embed(image)  # [B, N, C]
        x = torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1)  # [B, 1 + N, C]
        x = x + self.position_embedding(height // p, width // p)
        regs = self.register_tokens.expand(b, -1, -1)  # [B, R, C]
        return torch.cat([x[:, :1], regs, x[:, 1:]], dim=1)  # [B, 1 + R + N, C]

    def prenorm_tokens(self, image: torch.Tensor) -> torch.Tensor:
        """The hub model's ``x_prenorm``: output of the last block, before ``norm``. [B, 1374, C]."""
        x = self.tokens(image)
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image: [B, 3, 518, 518] normalised -> condition [B, 1374, C] (parameter-free LayerNorm)."""
        x = self.prenorm_tokens(image.to(self.pos_embed.dtype))
        return F.layer_norm(x.float(), x.shape[-1:])


def preprocess_normal_map(image: np.ndarray | object, size: int = 518) -> torch.Tensor:
    """A normal-map image (PIL image or uint8 [H, W, 3|4] array) -> [1, 3, size, size] ImageNet-normalised.

    As the release: LANCZOS resize to ``size`` x ``size``, RGB, ``/255``, ImageNet mean/std.
    """
    import numpy as np
    from PIL import Image

    pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    pil = pil.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
    x = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]  # [1, 3, S, S]
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


_HF_EMBEDDINGS = {
    "embeddings.cls_token": "cls_token",
    "embeddings.mask_token": "mask_token",
    "embeddings.register_tokens": "register_tokens",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
}
_HF_LAYER = {  # suffix after encoder.layer.N. -> suffix after blocks.N.
    "norm1.weight": "norm1.weight",
    "norm1.bias": "norm1.bias",
    "norm2.weight": "norm2.weight",
    "norm2.bias": "norm2.bias",
    "attention.output.dense.weight": "attn.proj.weight",
    "attention.output.dense.bias": "attn.proj.bias",
    "attention.o_proj.weight": "attn.proj.weight",
    "attention.o_proj.bias": "attn.proj.bias",
    "layer_scale1.lambda1": "ls1.gamma",
    "layer_scale2.lambda1": "ls2.gamma",
    "mlp.fc1.weight": "mlp.fc1.weight",
    "mlp.fc1.bias": "mlp.fc1.bias",
    "mlp.fc2.weight": "mlp.fc2.weight",
    "mlp.fc2.bias": "mlp.fc2.bias",
}
_HF_QKV = {  # q/k/v suffixes of the two transformers namings: (query, key, value) per tensor kind
    "attention.attention.{}.{}": ("query", "key", "value"),
    "attention.{}.{}": ("q_proj", "k_proj", "v_proj"),
}
_LAYER_KEY = re.compile(r"^encoder\.layer\.(\d+)\.(.+)$")


def convert_hf_state_dict(hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a transformers ``Dinov2WithRegistersModel`` state dict to the hub tree of ``DinoV2``.

    Accepts both the file naming (``attention.attention.query``, ``attention.output.dense``) and the
    newer module naming (``attention.q_proj``, ``attention.o_proj``); q, k, v are concatenated into
    ``qkv``. Raises ``KeyError`` naming the first key it does not know or an incomplete q/k/v triple.
    """
    out: dict[str, torch.Tensor] = {}
    pending: dict[tuple[int, str, int], torch.Tensor] = {}  # (layer, weight|bias, q/k/v index) -> tensor
    for key, tensor in hf.items():
        key = key.removeprefix("dinov2.")
        if key in _HF_EMBEDDINGS:
            out[_HF_EMBEDDINGS[key]] = tensor
            continue
        match = _LAYER_KEY.match(key)
        if match is None:
            raise KeyError(f"unknown DINOv2 key '{key}'")
        layer, rest = int(match.group(1)), match.group(2)
        if rest in _HF_LAYER:
            out[f"blocks.{layer}.{_HF_LAYER[rest]}"] = tensor
            continue
        slot = _qkv_slot(rest)
        if slot is None:
            raise KeyError(f"unknown DINOv2 key '{key}'")
        pending[(layer, slot[0], slot[1])] = tensor
    for layer, kind in sorted({(la, kd) for la, kd, _ in pending}):
        parts = [pending.get((layer, kind, i)) for i in range(3)]
        if any(p is None for p in parts):
            raise KeyError(f"encoder.layer.{layer}: incomplete query/key/value {kind}")
        out[f"blocks.{layer}.attn.qkv.{kind}"] = torch.cat(parts, dim=0)  # type: ignore[arg-type]
    return out


def _qkv_slot(rest: str) -> tuple[str, int] | None:
    """'attention.attention.key.bias' -> ('bias', 1); None when not a q/k/v tensor."""
    for pattern, names in _HF_QKV.items():
        for index, name in enumerate(names):
            for kind in ("weight", "bias"):
                if rest == pattern.format(name, kind):
                    return kind, index
    return None


def to_hf_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of ``convert_hf_state_dict`` in the file naming (used to write test checkpoints)."""
    emb = {v: k for k, v in _HF_EMBEDDINGS.items()}
    layer = {v: k for k, v in _HF_LAYER.items() if "o_proj" not in k}
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key in emb:
            out[emb[key]] = tensor
            continue
        _, n, rest = key.split(".", 2)
        if rest.startswith("attn.qkv."):
            kind = rest.rsplit(".", 1)[1]
            for name, part in zip(("query", "key", "value"), tensor.chunk(3, dim=0), strict=True):
                out[f"encoder.layer.{n}.attention.attention.{name}.{kind}"] = part.contiguous()
        else:
            out[f"encoder.layer.{n}.{layer[rest]}"] = tensor
    return out
