"""A toy structured-latent data set from small analytic shapes, for tests, benches and trying the trainer.

What and why:
- shapes: small spheres and boxes (2-4 voxels of the 64^3 grid across their half size), so an asset has a
  few hundred surface voxels and the mesh decoder (64 x as many cubes at 256^3) stays cheap on a CPU;
- ``slat_coords``: the voxels the surface passes through (centre SDF within half a voxel diagonal), the set
  the structure stage would give; every true surface point lies in one of them;
- ``slat_feats``: a *fixed random encoder* of each voxel's geometry (its signed distance in voxel units, the
  SDF gradient, the shape kind and size) through a seeded 2-layer tanh network. It is a deterministic, smooth
  function of the shape, like a real encoder's latent, so the flow has a structured target to learn; inverting
  the random mesh decoder instead costs a decoder pass per step per asset, too slow for the test suite;
- ``cond``: ``synthetic.condition_tokens`` of the shape parameters (a stand-in for DINOv2 tokens);
- ``surface_points`` / ``surface_normals``: exact samples of the analytic surface, the regulariser's truth.
- ``fit_mesh_decoder``: a random mesh decoder decodes these latents to no surface in particular, so benches that
  judge decoded normals first fit its SDF read-out to the toy set (closed-form least squares on the frozen
  torso's features against ``corner_sdf_targets``, the exact SDF at the decoded cubes' corners).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from backend.mesh.decoder_layout import CORNERS
from backend.nn.embeddings import absolute_position_embedding
from backend.nn.sparse_tensor import SparseTensor

from .slat_data import SLatAssetFolder
from .synthetic import Shape, condition_tokens, surface_samples, write_asset

GRID = 64
ENCODER_SEED = 4321


def small_shapes(count: int, seed: int) -> list[Shape]:
    """``count`` shapes alternating sphere / box, half sizes 0.022..0.05, centres within 0.1 of the origin."""
    rng = np.random.default_rng(seed)
    shapes = []
    for i in range(count):
        center = tuple(float(v) for v in rng.uniform(-0.1, 0.1, 3))
        if i % 2 == 0:
            r = float(rng.uniform(0.03, 0.05))
            shapes.append(Shape("sphere", center, (r, r, r)))
        else:
            shapes.append(Shape("box", center, tuple(float(v) for v in rng.uniform(0.022, 0.04, 3))))
    return shapes


def signed_distance(shape: Shape, p: np.ndarray) -> np.ndarray:
    """Exact SDF (positive outside) of ``shape`` at points [..., 3]."""
    d = p - np.array(shape.center)
    if shape.kind == "sphere":
        return np.linalg.norm(d, axis=-1) - shape.size[0]
    q = np.abs(d) - np.array(shape.size)
    return np.linalg.norm(np.maximum(q, 0.0), axis=-1) + np.minimum(q.max(-1), 0.0)


def sdf_gradient(shape: Shape, p: np.ndarray, h: float = 1e-4) -> np.ndarray:
    """Unit SDF gradient [..., 3] by central differences."""
    g = np.stack([signed_distance(shape, p + h * e) - signed_distance(shape, p - h * e) for e in np.eye(3)], -1)
    return g / np.maximum(np.linalg.norm(g, axis=-1, keepdims=True), 1e-12)


def surface_voxels(shape: Shape) -> tuple[np.ndarray, np.ndarray]:
    """(voxels [N, 3] int32 whose cube the surface may cross, their centres [N, 3])."""
    c = (np.arange(GRID) + 0.5) / GRID - 0.5
    centres = np.stack(np.meshgrid(c, c, c, indexing="ij"), axis=-1)  # [64, 64, 64, 3]
    near = np.abs(signed_distance(shape, centres)) <= 0.5 * np.sqrt(3.0) / GRID
    index = np.argwhere(near)
    return index.astype(np.int32), centres[near]


def encode(shape: Shape, centres: np.ndarray, seed: int = ENCODER_SEED) -> np.ndarray:
    """The fixed random encoder: [N, 3] voxel centres -> [N, 8] float32 latents of about unit scale."""
    g = torch.Generator().manual_seed(seed)
    w1, b1 = torch.randn(32, 7, generator=g), 0.5 * torch.randn(32, generator=g)
    w2 = torch.randn(8, 32, generator=g) / np.sqrt(32.0) * 1.5
    u = np.concatenate([signed_distance(shape, centres)[:, None] * GRID, sdf_gradient(shape, centres),
                        np.broadcast_to(shape.params()[:2], (len(centres), 2)),
                        np.full((len(centres), 1), 20.0 * float(np.mean(shape.size)))], axis=1)  # [N, 7]
    h = torch.tanh(torch.from_numpy(u.astype(np.float32)) @ w1.T + b1)  # [N, 32]
    return (h @ w2.T).numpy().astype(np.float32)


def make_slat_dataset(folder: Path, count: int = 4, *, tokens: int = 16, channels: int = 32, points: int = 1024,
                      seed: int = 0) -> list[Shape]:
    """Write ``count`` toy assets (training/slat_data.py format) to ``folder``; returns their shapes."""
    if not 1 <= count <= 100_000 or not 1 <= points <= 1 << 20:
        raise ValueError("count must be in [1, 100000] and points in [1, 2^20]")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shapes = small_shapes(count, seed)
    conds = condition_tokens(shapes, tokens, channels)
    for i, shape in enumerate(shapes):
        voxels, centres = surface_voxels(shape)
        pts, nrm = surface_samples(shape, points, seed * 1000 + i)
        arrays = {"cond": conds[i], "slat_coords": voxels, "slat_feats": encode(shape, centres),
                  "surface_points": pts, "surface_normals": nrm}
        write_asset(folder / f"{i:05d}_{shape.kind}.npz", arrays)
    return shapes


def corner_sdf_targets(shape: Shape, cubes: torch.Tensor, res: int = 256, clip: float = 3.0) -> torch.Tensor:
    """The shape's exact SDF at the 8 corners of each cube [M, 3] of the res^3 grid: [M, 8], in cube edges
    (positive outside, the mesh decoder's convention), clipped to +-``clip`` (only the sign change matters)."""
    corners = (cubes[:, None, :].double() + CORNERS.double()) / res - 0.5  # [M, 8, 3]
    sdf = signed_distance(shape, corners.numpy()) * res
    return torch.from_numpy(np.clip(sdf, -clip, clip)).float()


def fit_mesh_decoder(decoder: torch.nn.Module, mean: torch.Tensor, std: torch.Tensor, folder: Path,
                     shapes: list[Shape], ridge: float = 1e-3) -> float:
    """Fit the mesh decoder's SDF read-out (``out_layer`` rows 0..7, in place) to the toy data of ``folder``.

    The toy latents, de-normalised (``* std + mean``), go through the decoder's frozen torso (transformer and
    the two subdivisions) once; the read-out of the 8 corner SDF channels is then the ridge least-squares fit
    of ``corner_sdf_targets`` on the final features (pooled over assets, closed form). A random decoder
    decodes no surface (its normals sit near 90 degrees off); a fitted read-out turns the toy latents, which
    encode each voxel's geometry, into surfaces near the true ones, at a few decoder passes' cost (gradient
    descent through the whole decoder costs seconds a step on a CPU). Returns the fit's relative residual
    (residual sum of squares / target sum of squares).
    """
    assets = SLatAssetFolder(Path(folder), need_surface=False)
    if len(assets) != len(shapes):
        raise ValueError(f"{len(assets)} assets in {folder} but {len(shapes)} shapes")
    features, targets = [], []
    with torch.no_grad():
        for i in range(len(assets)):
            coords = torch.cat([torch.zeros(len(assets[i].coords), 1, dtype=torch.int32), assets[i].coords], 1)
            h = torso_features(decoder, SparseTensor(coords, assets[i].feats * std + mean))
            features.append(h.feats.double())
            targets.append(corner_sdf_targets(shapes[i], h.coords[:, 1:]).double())
    x = torch.cat([torch.cat(features), torch.ones(sum(len(f) for f in features), 1, dtype=torch.float64)], 1)
    y = torch.cat(targets)  # [M, 8]
    gram = x.T @ x + ridge * len(x) * torch.eye(x.shape[1], dtype=torch.float64)
    w = torch.linalg.solve(gram, x.T @ y)  # [C + 1, 8]
    with torch.no_grad():
        decoder.out_layer.weight[:8] = w[:-1].T.to(decoder.out_layer.weight.dtype)
        decoder.out_layer.bias[:8] = w[-1].to(decoder.out_layer.bias.dtype)
    return float((x @ w - y).square().sum() / y.square().sum())


def torso_features(decoder: torch.nn.Module, x: SparseTensor) -> SparseTensor:
    """``SLatMeshDecoder.forward`` up to (not including) ``out_layer``: features [64 N, C / 8] at 256^3."""

    h = decoder.input_layer(x.replace(x.feats.float()))
    h = h.replace(h.feats + absolute_position_embedding(x.coords[:, 1:], decoder.config.model_channels))
    for block in decoder.blocks:
        h = block(h)
    for up in decoder.upsample:
        h = up(h)
    return h
