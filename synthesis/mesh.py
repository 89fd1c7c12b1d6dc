"""The triangle mesh every stage passes on, and its normalisation into the decoder's unit cube."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.atomic import write_atomic


@dataclass
class Mesh:
    """A triangle mesh in Blender's frame (+Z up, facing -Y)."""

    vertices: np.ndarray  # [V, 3] float32
    faces: np.ndarray  # [F, 3] int64

    def __post_init__(self) -> None:
        self.vertices = np.ascontiguousarray(self.vertices, np.float32).reshape(-1, 3)
        self.faces = np.ascontiguousarray(self.faces, np.int64).reshape(-1, 3)
        if len(self.faces) and (self.faces.min() < 0 or self.faces.max() >= len(self.vertices)):
            raise ValueError("Mesh faces index vertices that do not exist.")

    def triangles(self) -> np.ndarray:
        """[F, 3 corners, 3] float64 corner positions."""
        return self.vertices.astype(np.float64)[self.faces]

    def face_areas(self) -> np.ndarray:
        t = self.triangles()
        return 0.5 * np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1)

    def volume(self) -> float:
        t = self.triangles()
        return float(np.einsum("ij,ij->i", t[:, 0], np.cross(t[:, 1], t[:, 2])).sum() / 6.0)


def normalise(mesh: Mesh, extent: float) -> Mesh:
    """Centre the bounding box on the origin and scale its longest side to ``extent`` (<= 1: the unit cube)."""
    if len(mesh.vertices) == 0:
        return mesh
    lo, hi = mesh.vertices.min(0), mesh.vertices.max(0)
    size = float((hi - lo).max())
    scale = extent / size if size > 0 else 1.0
    return Mesh((mesh.vertices - (lo + hi) / 2) * scale, mesh.faces)


def save_mesh(mesh: Mesh, path: Path) -> None:
    """Atomically write ``vertices`` and ``faces`` as an uncompressed .npz."""
    write_atomic(path, lambda temp: _savez(temp, vertices=mesh.vertices, faces=mesh.faces))


def load_mesh(path: Path) -> Mesh:
    with np.load(path, allow_pickle=False) as data:
        return Mesh(data["vertices"], data["faces"])


def _savez(temp: Path, **arrays: np.ndarray) -> None:
    with open(temp, "wb") as f:  # a file object, so numpy does not append ".npz" to the temporary name
        np.savez(f, **arrays)
