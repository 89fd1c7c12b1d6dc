"""The mesh decoder's 101 channels per cube and their per-corner averages.

Channels (release ``cube2mesh.py::_calc_layout``, dict order sdf, deform, weights, colour): sdf [0:8] (one per
cube corner), deform [8:32] (8 x 3), FlexiCubes weights [32:53] (12 beta, 8 alpha, 1 gamma), colour [53:101]
(8 x 6). Corner order is (0,0,0), (1,0,0), (0,1,0), (1,1,0), (0,0,1), (1,0,1), (0,1,1), (1,1,1) as [x, y, z]
offsets. Grid points of a ``res``-cube grid are integer [x, y, z] in 0..res; a point's int64 key is
``(x * (res + 1) + y) * (res + 1) + z`` (x slowest, as the release's dense arrays).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

CORNERS = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0],
                        [0, 0, 1], [1, 0, 1], [0, 1, 1], [1, 1, 1]], dtype=torch.int64)
FEATURE_CHANNELS = 101


def sdf_bias(res: int) -> float:
    """The release adds ``-1 / res`` to every decoded sdf value (-1/256 at the release's resolution)."""
    return -1.0 / res


@dataclass
class CubeFeatures:
    sdf: torch.Tensor  # [M, 8]
    deform: torch.Tensor  # [M, 8, 3]
    weights: torch.Tensor  # [M, 21] FlexiCubes beta [:12], alpha [12:20], gamma [20]
    color: torch.Tensor  # [M, 48] (8 corners x 6), unused by the geometry


def split_features(feats: torch.Tensor) -> CubeFeatures:
    """[M, 101] decoder output -> its named parts (float32); [M, 32] (sdf, deformation) or [M, 53] (and the
    FlexiCubes weights) when the decoder computed only those (the missing parts are then [M, 0])."""
    if feats.shape[-1] not in (32, 53, FEATURE_CHANNELS):
        raise ValueError(f"expected {FEATURE_CHANNELS} (or 32 or 53) channels per cube, got {feats.shape[-1]}")
    f = feats.float()
    return CubeFeatures(f[:, 0:8], f[:, 8:32].reshape(-1, 8, 3), f[:, 32:53], f[:, 53:101])


@dataclass
class GridVertices:
    """Unique cube corners of the occupied cubes with their averaged attributes."""

    coords: torch.Tensor  # [V, 3] int64 grid positions in 0..res
    keys: torch.Tensor  # [V] int64, sorted ascending
    sdf: torch.Tensor  # [V]
    deform: torch.Tensor  # [V, 3]
    corner_index: torch.Tensor  # [M, 8] index into the unique vertices for each cube corner


def grid_vertices(cubes: torch.Tensor, sdf: torch.Tensor, deform: torch.Tensor, res: int) -> GridVertices:
    """Average the per-cube corner values over all cubes sharing each corner (the release's scatter mean).

    ``cubes`` [M, 3] (0..res-1), ``sdf`` [M, 8], ``deform`` [M, 8, 3]; the result is sorted by key.
    """
    offsets = grid_keys(CORNERS.to(cubes.device), res)  # [8]: keys are linear, so corner keys are sums
    keys = (grid_keys(cubes, res)[:, None] + offsets).reshape(-1)  # [M * 8], no [M, 8, 3] temporary
    unique, inverse = torch.unique(keys, return_inverse=True)  # sorted keys
    n, dev = len(unique), sdf.device
    count = torch.zeros(n, device=dev).index_add_(0, inverse, torch.ones_like(keys, dtype=torch.float32))
    mean_sdf = torch.zeros(n, device=dev).index_add_(0, inverse, sdf.reshape(-1).float()) / count  # [V]
    sum_def = torch.zeros(n, 3, device=dev).index_add_(0, inverse, deform.reshape(-1, 3).float())  # [V, 3]
    return GridVertices(keys_to_coords(unique, res), unique, mean_sdf, sum_def / count[:, None],
                        inverse.reshape(-1, 8))


def grid_keys(coords: torch.Tensor, res: int) -> torch.Tensor:
    """Integer grid positions [..., 3] in 0..res -> int64 keys [...] (x slowest)."""
    n = res + 1
    c = coords.long()
    return (c[..., 0] * n + c[..., 1]) * n + c[..., 2]


def keys_to_coords(keys: torch.Tensor, res: int) -> torch.Tensor:
    """Inverse of ``grid_keys``: [N] -> [N, 3] int64."""
    n = res + 1
    return torch.stack([keys // (n * n), (keys // n) % n, keys % n], dim=1)


def in_grid(coords: torch.Tensor, upper: int) -> torch.Tensor:
    """Mask [...]: all three coordinates in 0..upper (inclusive)."""
    return ((coords >= 0) & (coords <= upper)).all(dim=-1)


def lookup(sorted_keys: torch.Tensor, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions of ``keys`` in ``sorted_keys`` and whether each was found (a sorted-array hash map)."""
    if len(sorted_keys) == 0:
        zeros = torch.zeros_like(keys)
        return zeros, torch.zeros_like(keys, dtype=torch.bool)
    idx = torch.searchsorted(sorted_keys, keys).clamp(max=len(sorted_keys) - 1)
    return idx, sorted_keys[idx] == keys


def deformed_positions(coords: torch.Tensor, deform: torch.Tensor, res: int) -> torch.Tensor:
    """Grid positions -> object space in [-0.5, 0.5]^3, moved by up to half a cube along tanh(deform)."""
    return coords.float() / res - 0.5 + deform_scale(res) * torch.tanh(deform)


def deform_scale(res: int) -> float:
    """How far tanh(deform) = 1 moves a grid point: just under half a cube (the release's ``1 - 1e-8``)."""
    return (1.0 - 1e-8) / (2.0 * res)
