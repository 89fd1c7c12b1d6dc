"""The mesh decoder's 101 channels per cube and their per-corner averages.

Channels (release ``cube2mesh.py`` layout): sdf [0:8] (one per cube corner), deform [8:32] (8 x 3),
FlexiCubes weights [32:53] (12 beta, 8 alpha, 1 gamma), colour [53:101] (8 x 6). Corner order is
(0,0,0), (1,0,0), (0,1,0), (1,1,0), (0,0,1), (1,0,1), (0,1,1), (1,1,1) as [x, y, z] offsets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

CORNERS = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0],
                        [0, 0, 1], [1, 0, 1], [0, 1, 1], [1, 1, 1]], dtype=torch.int64)


@dataclass
class CubeFeatures:
    sdf: torch.Tensor  # [M, 8]
    deform: torch.Tensor  # [M, 8, 3]
    weights: torch.Tensor  # [M, 21]
    color: torch.Tensor  # [M, 48]


def split_features(feats: torch.Tensor) -> CubeFeatures:
    """[M, 101] decoder output -> its named parts (float32)."""
    f = feats.float()
    return CubeFeatures(f[:, 0:8], f[:, 8:32].reshape(-1, 8, 3), f[:, 32:53], f[:, 53:101])


@dataclass
class GridVertices:
    """Unique cube corners of the occupied cubes with their averaged attributes."""

    coords: torch.Tensor  # [V, 3] int64 grid positions in 0..res
    sdf: torch.Tensor  # [V]
    deform: torch.Tensor  # [V, 3]
    corner_index: torch.Tensor  # [M, 8] index into the unique vertices for each cube corner


def grid_vertices(cubes: torch.Tensor, sdf: torch.Tensor, deform: torch.Tensor, res: int) -> GridVertices:
    """Average the per-cube corner values over all cubes sharing each corner (the release's scatter mean)."""
    corners = cubes.long()[:, None, :] + CORNERS.to(cubes.device)  # [M, 8, 3]
    keys = grid_keys(corners.reshape(-1, 3), res)  # [M * 8]
    unique, inverse = torch.unique(keys, return_inverse=True)  # sorted keys
    n, dev = len(unique), sdf.device
    count = torch.zeros(n, device=dev).index_add_(0, inverse, torch.ones_like(keys, dtype=torch.float32))
    mean_sdf = torch.zeros(n, device=dev).index_add_(0, inverse, sdf.reshape(-1)) / count  # [V]
    mean_def = torch.zeros(n, 3, device=dev).index_add_(0, inverse, deform.reshape(-1, 3)) / count[:, None]
    return GridVertices(keys_to_coords(unique, res), mean_sdf, mean_def, inverse.reshape(-1, 8))


def grid_keys(coords: torch.Tensor, res: int) -> torch.Tensor:
    """Integer grid positions [N, 3] in 0..res -> int64 keys (x slowest)."""
    n = res + 1
    return (coords[:, 0] * n + coords[:, 1]) * n + coords[:, 2]


def keys_to_coords(keys: torch.Tensor, res: int) -> torch.Tensor:
    n = res + 1
    return torch.stack([keys // (n * n), (keys // n) % n, keys % n], dim=1)


def deformed_positions(coords: torch.Tensor, deform: torch.Tensor, res: int) -> torch.Tensor:
    """Grid positions -> object space in [-0.5, 0.5]^3, moved by up to half a cube along tanh(deform)."""
    return coords.float() / res - 0.5 + (1.0 - 1e-8) / (2.0 * res) * torch.tanh(deform)
