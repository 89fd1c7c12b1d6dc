"""Mesh connectivity for the refinement: the uniform Laplacian and the edge-face adjacency.

The Laplacian regularises the height field the refinement solves for (see ``refine.py``): with ``L`` the
uniform graph Laplacian (``(L h)_i = h_i - mean of h over the neighbours of i``), ``|L h|^2`` is small for
smooth displacements, so a vertex no view term reaches follows its neighbours smoothly instead of staying
behind as a spike, and the unseen side keeps the shape it had.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Connectivity:
    """What the refinement needs to know about the mesh's topology, on the refinement device."""

    laplacian: torch.Tensor  # sparse [V, V] float32, uniform: I - D^-1 A
    edges: torch.Tensor  # [E, 2] int64, each undirected edge once
    edge_faces: torch.Tensor  # [E, 2] int64, the faces on either side; -1 where the edge is open


def unique_edges(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Undirected edges [E, 2] of triangles [F, 3] and the (up to) two faces of each [E, 2] (-1 = none).

    A non-manifold edge (three or more faces) keeps two of them; it is rare in generated meshes and only
    decides whether the edge can be a silhouette edge.
    """
    f = np.asarray(faces, np.int64)
    half = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])  # [3F, 2]
    owner = np.tile(np.arange(len(f)), 3)
    key = np.sort(half, 1)
    edges, inverse = np.unique(key, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    first = np.full(len(edges), -1, np.int64)
    second = np.full(len(edges), -1, np.int64)
    sorted_edges, sorted_owner = inverse[order], owner[order]
    starts = np.r_[True, sorted_edges[1:] != sorted_edges[:-1]]
    first[sorted_edges[starts]] = sorted_owner[starts]
    follow = np.r_[False, ~starts[1:]]  # the second occurrence of an edge (and later ones overwrite)
    second[sorted_edges[follow]] = sorted_owner[follow]
    return edges, np.stack([first, second], 1)


def uniform_laplacian(edges: np.ndarray, count: int, device: torch.device) -> torch.Tensor:
    """Sparse uniform Laplacian [V, V] of an edge list [E, 2]: I - D^-1 A (isolated vertices: zero rows)."""
    i = np.concatenate([edges[:, 0], edges[:, 1]])
    j = np.concatenate([edges[:, 1], edges[:, 0]])
    degree = np.bincount(i, minlength=count).astype(np.float64)
    weight = -1.0 / np.maximum(degree[i], 1.0)
    diag = np.arange(count)
    rows = np.concatenate([i, diag])
    cols = np.concatenate([j, diag])
    values = np.concatenate([weight, (degree > 0).astype(np.float64)])
    index = torch.tensor(np.stack([rows, cols]), dtype=torch.int64, device=device)
    return torch.sparse_coo_tensor(index, torch.tensor(values, dtype=torch.float32, device=device),
                                   (count, count), check_invariants=False).coalesce()


def connectivity(faces: np.ndarray, count: int, device: torch.device) -> Connectivity:
    """The Laplacian and the edge-face adjacency of a mesh with ``count`` vertices."""
    edges, edge_faces = unique_edges(faces)
    return Connectivity(uniform_laplacian(edges, count, device), torch.tensor(edges, device=device),
                        torch.tensor(edge_faces, device=device))

