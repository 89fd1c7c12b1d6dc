"""A toy data set from analytic shapes (spheres and boxes), for tests, benches and trying the trainer.

Each shape gives its occupancy at the decoder's grid, exact surface points and normals, and condition tokens
that are a fixed random function of the shape's parameters (a stand-in for DINOv2 tokens of its normal image).
Its ``ss_latent`` is found by inverting a frozen structure decoder: Adam on the latent until the decoded
logits match the occupancy (binary cross-entropy), so the latent decodes to the shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from backend.atomic import write_atomic


@dataclass(frozen=True)
class Shape:
    kind: str  # "sphere" or "box"
    center: tuple[float, float, float]
    size: tuple[float, float, float]  # sphere: (radius, radius, radius); box: half extents

    def params(self) -> np.ndarray:
        return np.array([self.kind == "sphere", self.kind == "box", *self.center, *self.size], np.float32)


def random_shapes(count: int, seed: int) -> list[Shape]:
    """``count`` shapes alternating sphere / box, inside [-0.45, 0.45]^3."""
    rng = np.random.default_rng(seed)
    shapes = []
    for i in range(count):
        center = tuple(float(v) for v in rng.uniform(-0.08, 0.08, 3))
        if i % 2 == 0:
            r = float(rng.uniform(0.2, 0.32))
            shapes.append(Shape("sphere", center, (r, r, r)))
        else:
            shapes.append(Shape("box", center, tuple(float(v) for v in rng.uniform(0.15, 0.3, 3))))
    return shapes


def cell_centres(resolution: int) -> np.ndarray:
    """[R, R, R, 3] positions of the grid's cell centres in [-0.5, 0.5]^3 (axis order = grid axes)."""
    c = (np.arange(resolution) + 0.5) / resolution - 0.5
    return np.stack(np.meshgrid(c, c, c, indexing="ij"), axis=-1)


def occupancy(shape: Shape, resolution: int) -> np.ndarray:
    """bool [R, R, R]: cell centres inside the shape."""
    p = cell_centres(resolution) - np.array(shape.center)
    if shape.kind == "sphere":
        return np.linalg.norm(p, axis=-1) <= shape.size[0]
    return (np.abs(p) <= np.array(shape.size)).all(axis=-1)


def surface_samples(shape: Shape, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(points [count, 3], unit outward normals [count, 3]) uniformly on the shape's surface."""
    rng = np.random.default_rng(seed)
    centre = np.array(shape.center)
    if shape.kind == "sphere":
        n = rng.normal(size=(count, 3))
        n /= np.linalg.norm(n, axis=1, keepdims=True)
        return (centre + shape.size[0] * n).astype(np.float32), n.astype(np.float32)
    h = np.array(shape.size)
    areas = np.array([h[1] * h[2], h[0] * h[2], h[0] * h[1]] * 2)
    face = rng.choice(6, size=count, p=areas / areas.sum())
    axis, sign = face % 3, np.where(face < 3, 1.0, -1.0)
    p = rng.uniform(-1.0, 1.0, size=(count, 3)) * h
    p[np.arange(count), axis] = sign * h[axis]
    normals = np.zeros((count, 3))
    normals[np.arange(count), axis] = sign
    return (centre + p).astype(np.float32), normals.astype(np.float32)


def condition_tokens(shapes: list[Shape], tokens: int, channels: int, seed: int = 1234) -> np.ndarray:
    """[N, tokens, channels] float32: a fixed random map of each shape's parameters, layer-normed per token."""
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(tokens, channels, 8, generator=g)
    offset = torch.randn(tokens, channels, generator=g)
    params = torch.from_numpy(np.stack([s.params() for s in shapes]))  # [N, 8]
    h = torch.einsum("lcp,np->nlc", weight, params * 4.0) + offset  # [N, L, C]
    return F.layer_norm(h, (channels,)).numpy().astype(np.float32)


def decoder_resolution(decoder: nn.Module) -> int:
    """Edge of the decoder's output grid for a 16^3 latent (16 * 2^(levels - 1))."""
    return 16 * 2 ** (len(decoder.config.channels) - 1)


def fit_latents(decoder: nn.Module, occupancies: np.ndarray, steps: int = 200, lr: float = 0.1,
                ) -> torch.Tensor:
    """Latents [N, 8, 16, 16, 16] whose decoded logits match ``occupancies`` [N, R, R, R] (BCE, Adam)."""
    target = torch.from_numpy(occupancies.astype(np.float32))[:, None]  # [N, 1, R, R, R]
    # From zeros, not noise: the latent only takes the structure the shape needs (real encoders' latents are
    # smooth fields too), which also keeps the toy set learnable in a CPU test's budget.
    latent = torch.zeros(len(target), 8, 16, 16, 16, requires_grad=True)
    optimizer = torch.optim.Adam([latent], lr=lr)
    for _ in range(steps):
        loss = F.binary_cross_entropy_with_logits(decoder(latent), target) + 1e-3 * latent.square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return latent.detach()


def write_asset(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """One ``.npz`` asset, written atomically."""
    def save(tmp: Path) -> None:
        with tmp.open("wb") as f:
            np.savez(f, **arrays)

    write_atomic(path, save)


def make_dataset(folder: Path, decoder: nn.Module, count: int = 4, *, tokens: int = 16, channels: int = 32,
                 points: int = 4096, fit_steps: int = 200, seed: int = 0) -> list[Shape]:
    """Write ``count`` toy assets (training/data.py format) to ``folder``; returns their shapes."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shapes = random_shapes(count, seed)
    res = decoder_resolution(decoder)
    occ = np.stack([occupancy(s, res) for s in shapes])
    latents = fit_latents(decoder, occ, steps=fit_steps).numpy()
    conds = condition_tokens(shapes, tokens, channels)
    for i, shape in enumerate(shapes):
        pts, nrm = surface_samples(shape, points, seed * 1000 + i)
        arrays = {"cond": conds[i], "ss_latent": latents[i], "surface_points": pts, "surface_normals": nrm}
        if res == 64:
            arrays["occupancy"] = occ[i].astype(np.uint8)
        write_asset(folder / f"{i:05d}_{shape.kind}.npz", arrays)
    return shapes
