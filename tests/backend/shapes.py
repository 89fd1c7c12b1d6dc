"""Asymmetric test shapes with known poses for the rasterizer and alignment (tests and bench/bench_align.py).

Each shape is built in Blender's frame (+Z up, facing -Y) inside the unit cube, like the engines' meshes.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from backend.camera import Camera, look_at, make_camera

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def suzanne() -> tuple[np.ndarray, np.ndarray]:
    """Blender's monkey, exported once with bpy (968 triangles)."""
    v, f = [], []
    for line in (FIXTURES / "suzanne.obj").read_text(encoding="utf-8").splitlines():
        if line.startswith("v "):
            v.append([float(x) for x in line.split()[1:4]])
        elif line.startswith("f "):
            f.append([int(x) - 1 for x in line.split()[1:4]])
    return np.array(v, np.float32) * 0.8, np.array(f, np.int64)


def _boxes(boxes: list[tuple[tuple[float, float, float], tuple[float, float, float]]]) -> tuple[np.ndarray, np.ndarray]:
    """Union (as overlapping pieces) of axis-aligned boxes given as (centre, size); outward winding."""
    corners = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    tris = np.array([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))])
    vs, fs = [], []
    for i, (center, size) in enumerate(boxes):
        vs.append(corners * np.array(size) + np.array(center))
        fs.append(tris + 8 * i)
    return np.concatenate(vs).astype(np.float32), np.concatenate(fs).astype(np.int64)


def chair() -> tuple[np.ndarray, np.ndarray]:
    """A chair of boxes with one armrest, so no mirror or rotation symmetry."""
    legs = [((x, y, -0.25), (0.06, 0.06, 0.5)) for x in (-0.17, 0.17) for y in (-0.17, 0.17)]
    return _boxes([*legs, ((0.0, 0.0, 0.02), (0.42, 0.42, 0.06)),  # seat
                   ((0.0, 0.19, 0.27), (0.42, 0.05, 0.46)),  # back
                   ((0.2, -0.02, 0.15), (0.05, 0.36, 0.05)),  # one armrest
                   ((0.2, -0.17, 0.09), (0.05, 0.05, 0.1))])


def bust() -> tuple[np.ndarray, np.ndarray]:
    """A bust sculpted from spheres: shoulders, neck, head, a nose and one ear."""
    import trimesh

    parts = [((0.0, 0.0, -0.3), (0.42, 0.2, 0.14)), ((0.0, 0.0, -0.1), (0.08, 0.08, 0.12)),
             ((0.0, 0.0, 0.15), (0.17, 0.2, 0.22)), ((0.0, -0.2, 0.13), (0.04, 0.07, 0.05)),
             ((0.17, 0.02, 0.16), (0.03, 0.06, 0.08)), ((-0.08, -0.12, 0.32), (0.1, 0.08, 0.06))]
    vs, fs, base = [], [], 0
    for center, radii in parts:
        s = trimesh.creation.icosphere(subdivisions=3)
        vs.append(s.vertices * np.array(radii) + np.array(center))
        fs.append(s.faces + base)
        base += len(s.vertices)
    return np.concatenate(vs).astype(np.float32), np.concatenate(fs).astype(np.int64)


SHAPES = {"suzanne": suzanne, "chair": chair, "bust": bust}


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random rotation [3, 3] (from a unit quaternion)."""
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def random_view(rng: np.random.Generator, size: int, fov_deg: float) -> Camera:
    """A camera looking at the unit cube from a random direction, roll and small offset (0 = orthographic)."""
    d = rng.normal(size=3)
    d /= np.linalg.norm(d)
    r, _ = look_at(d, np.zeros(3), (0.0, 0.0, 1.0) if abs(d[2]) < 0.99 else (0.0, 1.0, 0.0))
    angle = rng.uniform(-math.pi, math.pi)
    c, s = math.cos(angle), math.sin(angle)
    r = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ r
    offset = rng.uniform(-0.05, 0.05, size=2)
    extent = rng.uniform(1.1, 1.4)  # world units seen across the image at the mesh
    if fov_deg == 0:
        return make_camera(r, [offset[0], offset[1], -3.0], size, size, 0.0, extent)
    fov = math.radians(fov_deg)
    distance = 0.5 * extent / math.tan(0.5 * fov)
    return make_camera(r, [offset[0], offset[1], -distance], size, size, fov, 1.0)


def bumpy_sphere(subdivisions: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """A detailed shape for the refinement: an icosphere of radius about 0.4 with smooth bumps on it."""
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=subdivisions)
    v = np.asarray(s.vertices)
    r = 0.4 + 0.04 * np.sin(6 * v[:, 0]) * np.cos(5 * v[:, 2]) + 0.03 * np.sin(9 * v[:, 1] + 1)
    return (v * r[:, None]).astype(np.float32), np.asarray(s.faces, np.int64)


def smoothed(vertices: np.ndarray, faces: np.ndarray, iterations: int) -> np.ndarray:
    """The vertices after ``iterations`` rounds of Laplacian smoothing (same faces): detail gone, a little shrunk."""
    import trimesh

    mesh = trimesh.Trimesh(vertices, faces, process=False)
    trimesh.smoothing.filter_laplacian(mesh, lamb=0.5, iterations=iterations)
    return np.asarray(mesh.vertices, np.float32)


def chamfer(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], samples: int = 20000) -> float:
    """Symmetric mean Chamfer distance between two meshes (vertices, faces), from seeded surface samples."""
    import trimesh
    from scipy.spatial import cKDTree

    pa = trimesh.sample.sample_surface(trimesh.Trimesh(*a, process=False), samples, seed=1)[0]
    pb = trimesh.sample.sample_surface(trimesh.Trimesh(*b, process=False), samples, seed=2)[0]
    return 0.5 * float(cKDTree(pb).query(pa)[0].mean() + cKDTree(pa).query(pb)[0].mean())
