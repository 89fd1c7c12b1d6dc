"""Mesh cleanup users expect (the release has none): floaters, hollow inner walls, holes, decimation, normals.

Plain functions on numpy (vertices [V, 3] float32, faces [F, 3] int32).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CleanupOptions:
    remove_floaters: bool = True
    "Drop components with under ``floater_fraction`` of the largest one's faces, and inward-facing shells."
    floater_fraction: float = 0.01
    fill_holes: bool = False
    target_faces: int = 0
    "Decimate to about this many faces (0: keep all)."


def clean_mesh(vertices: np.ndarray, faces: np.ndarray,
               options: CleanupOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply ``options``; returns (vertices, faces, area-weighted unit vertex normals)."""
    import trimesh

    mesh = trimesh.Trimesh(vertices, faces, process=True)  # merges duplicate vertices
    if options.remove_floaters:
        mesh = _drop_floaters_and_inner_shells(mesh, options.floater_fraction)
    if options.fill_holes:
        trimesh.repair.fill_holes(mesh)
    if mesh.is_watertight and mesh.volume < 0:
        mesh.invert()  # outward winding
    v, f = np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int32)
    if options.target_faces and len(f) > options.target_faces:
        v, f = decimate(v, f, options.target_faces)
    return v, f, vertex_normals(v, f)


def _drop_floaters_and_inner_shells(mesh, fraction: float):  # noqa: ANN001, ANN202 - trimesh objects
    parts = mesh.split(only_watertight=False)
    if len(parts) <= 1:
        return mesh
    largest = max(len(p.faces) for p in parts)
    keep = [p for p in parts if len(p.faces) >= fraction * largest and not (p.is_watertight and p.volume < 0)]
    import trimesh

    return trimesh.util.concatenate(keep) if keep else mesh


def decimate(vertices: np.ndarray, faces: np.ndarray, target_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric decimation to about ``target_faces`` faces (fast-simplification)."""
    import fast_simplification

    reduction = 1.0 - target_faces / len(faces)
    v, f = fast_simplification.simplify(vertices, faces, target_reduction=float(np.clip(reduction, 0.0, 0.99)))
    return np.asarray(v, np.float32), np.asarray(f, np.int32)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals [V, 3] (the cross product's length is twice the face area)."""
    tri = vertices[faces]  # [F, 3, 3]
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # [F, 3], |n| = 2 * area
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_n)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return (normals / np.maximum(length, 1e-12)).astype(np.float32)
