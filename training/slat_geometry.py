"""Geometry of structured latents as the engine meshes them: decode, marching cubes, compare with the truth.

- ``decoded_mesh``: one latent [N, 8] (normalised) on its voxels, de-normalised and decoded by the mesh decoder,
  then the engine's extraction (``backend.mesh.marching_cubes.extract_marching_cubes`` at 256^3, the default
  path of the hi3dgen pipeline); ``None`` when the decoded SDF has no surface;
- ``latent_geometry_scores``: per asset, area-uniform samples of that mesh (``metrics.sample_mesh``, face
  normals) against the asset's exact surface samples with ``metrics.geometry_metrics`` (Chamfer distance,
  F-score at one mesh cube, 1 / 256, and normal consistency). A latent that decodes to no surface scores F = 0
  and the Chamfer distance of a single point at the grid's centre (as ``evaluate.geometry_scores``).

Feeding it ``slat_evaluate.sample_latents`` scores a flow; feeding it the assets' own latents gives the ceiling
the decoder allows (what a flow that samples every latent exactly would score).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from backend.errors import EmptyResult
from backend.mesh.marching_cubes import extract_marching_cubes
from backend.nn.sparse_tensor import SparseTensor

from .metrics import geometry_metrics, sample_mesh
from .slat_data import SLatAssetFolder
from .slat_normals import MESH_RESOLUTION
from .slat_trainer import Normalisation


@torch.no_grad()
def decoded_mesh(decoder: nn.Module, norm: Normalisation, coords: torch.Tensor,
                 latent: torch.Tensor) -> tuple[np.ndarray, np.ndarray] | None:
    """Voxels [N, 3] (0..63) and a normalised latent [N, 8] -> (vertices [V, 3], faces [F, 3]) or ``None``."""
    batch = torch.cat([torch.zeros(len(coords), 1, dtype=torch.int32), coords.to(torch.int32)], 1)
    decoded = decoder(SparseTensor(batch, latent.float() * norm.std + norm.mean))
    try:
        return extract_marching_cubes(decoded.coords[:, 1:].long(), decoded.feats.float(), MESH_RESOLUTION)
    except EmptyResult:
        return None


def latent_geometry_scores(latents: list[torch.Tensor], decoder: nn.Module, norm: Normalisation, data: Path, *,
                           points: int = 2048, seed: int = 0) -> list[dict[str, float]]:
    """``geometry_metrics`` of each latent's decoded mesh (``points`` samples) against its asset's surface."""
    assets = SLatAssetFolder(Path(data), need_surface=True)
    if len(latents) != len(assets):
        raise ValueError(f"{len(latents)} latents for {len(assets)} assets in {data}")
    threshold = 1.0 / MESH_RESOLUTION
    out = []
    for i, latent in enumerate(latents):
        asset = assets[i]
        gt_p = asset.points.double().numpy()  # type: ignore[union-attr]
        gt_n = asset.normals.double().numpy()  # type: ignore[union-attr]
        mesh = decoded_mesh(decoder, norm, asset.coords, latent)
        if mesh is None:
            scores = geometry_metrics(np.zeros((1, 3)), gt_p, threshold, np.array([[1.0, 0.0, 0.0]]), gt_n)
            out.append({**scores, "f_score": 0.0})
            continue
        p, n = sample_mesh(mesh[0], mesh[1], points, seed=seed + i)
        out.append(geometry_metrics(p, gt_p, threshold, n, gt_n))
    return out


def own_latents(data: Path) -> list[torch.Tensor]:
    """The assets' own (normalised) latents [N_i, 8], in folder order."""
    assets = SLatAssetFolder(Path(data), need_surface=False)
    return [assets[i].feats for i in range(len(assets))]
