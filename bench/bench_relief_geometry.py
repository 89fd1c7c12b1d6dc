"""What the relief's face budget costs and buys: faces, seconds and geometric error, decimated vs full.

Run: .venv/bin/python bench/bench_relief_geometry.py
The baseline is the undecimated mesh (``faces=0``) of the same image and grid, built in the same process:
times are printed as ratios to it, and the error is the distance from every front vertex of the full mesh
to the decimated surface, in grid cells (the object's long side is ``resolution`` cells) and in per cent of
the object's size. The flat back and the outline are kept exactly (the back's area is checked).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from backend.engines.base import EngineRequest, validate_params  # noqa: E402
from backend.engines.relief import DEFAULT_FACES, ReliefEngine  # noqa: E402
from backend.images import LoadedImage  # noqa: E402
from backend.jobs import JobContext  # noqa: E402


def best_of(fn, repeat: int = 3) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def distance_to_surface(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray, k: int = 8) -> np.ndarray:
    """Distance [P] from each point to the surface (vertices, faces): the exact point-triangle distance to
    every face around the point's ``k`` nearest vertices (the closest face is almost always among them)."""
    import trimesh
    from scipy.spatial import cKDTree

    mesh = trimesh.Trimesh(vertices, faces, process=False)
    around = mesh.vertex_faces  # [V, M] padded with -1
    _, near = cKDTree(vertices).query(points, k=k)  # [P, k]
    candidates = around[near].reshape(len(points), -1)  # [P, k * M]
    best = np.full(len(points), np.inf)
    for col in range(candidates.shape[1]):
        f = candidates[:, col]
        ok = f >= 0
        if not ok.any():
            continue
        tri = vertices[faces[f[ok]]].astype(np.float64)  # [p, 3, 3]
        closest = trimesh.triangles.closest_point(tri, points[ok])
        best[ok] = np.minimum(best[ok], np.linalg.norm(closest - points[ok], axis=1))
    return best


def back_area(mesh) -> float:
    """Area of the faces looking straight back (+Y): the flat back."""
    import trimesh

    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    return float(tm.area_faces[tm.face_normals[:, 1] > 0.999].sum())


def image(side: int) -> LoadedImage:
    img = Image.open(REPO / "examples" / "suzanne.png").convert("RGBA")
    if img.size != (side, side):
        img = img.resize((side, side), Image.Resampling.LANCZOS)
    return LoadedImage(np.asarray(img, np.float32) / 255.0, True, "RGBA")


def main() -> None:
    engine = ReliefEngine()
    print(f"default faces: {DEFAULT_FACES}")
    print(f"{'image':>6} {'res':>4} {'faces':>8} {'seconds':>8} {'x full':>7} {'faces/full':>10} "
          f"{'err max':>8} {'err mean':>8} {'(cells)':>7} {'err max %':>9}")  # noqa: E501
    for side, res in ((512, 256), (1024, 256), (2048, 512)):
        loaded = image(side)

        def run(faces: int, loaded: LoadedImage = loaded, res: int = res):
            params = validate_params(engine.params, {"resolution": res, "faces": faces})
            return engine.generate(EngineRequest(loaded, "bench", 0, params), JobContext()).meshes[0]

        t_full, full = best_of(lambda: run(0))
        print(f"{side:>6} {res:>4} {len(full.faces):>8} {t_full:8.3f} {1.0:7.2f} {1.0:10.3f} {'-':>8} {'-':>8}")
        for faces in (10_000, 20_000, DEFAULT_FACES, 80_000):
            t, mesh = best_of(lambda faces=faces: run(faces))
            front = full.vertices[: len(full.vertices) // 2].astype(np.float64)  # the front, then the back
            err = distance_to_surface(front, mesh.vertices, mesh.faces)
            assert np.isclose(back_area(mesh), back_area(full), rtol=1e-4), "the back is kept exactly"
            cells = err * res  # the long side is 1 world unit and ``res`` cells
            mark = " (default)" if faces == DEFAULT_FACES else ""
            print(f"{side:>6} {res:>4} {len(mesh.faces):>8} {t:8.3f} {t / t_full:7.2f} "
                  f"{len(mesh.faces) / len(full.faces):10.3f} {cells.max():8.3f} {cells.mean():8.4f} "
                  f"{'':>7} {100 * err.max():9.3f}{mark}")


if __name__ == "__main__":
    main()
