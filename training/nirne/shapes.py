"""A generated NiRNE data set with exact normals: shaded height fields on a disc, two domains.

Each sample is a height field ``z(x, y)`` over an elliptical silhouette, seen orthographically: its
camera-space normal is ``normalize(-dz/dx, -dz/dy, 1)`` in the backend's OpenGL frame (+X right, +Y up,
+Z toward the viewer), computed from the field by central differences. The image is a Lambertian shading
of that field composited over white, as the YOSO pipeline composites its input.

The two domains mirror the paper's data split:

- ``real``: smooth, low-detail geometry (a dome with broad bumps) under varied light with a textured albedo
  and sensor noise: the look of real photographs, whose ground truth is coarse;
- ``synthetic``: the same kind of dome carrying sharp high-frequency detail (grooves, ridges, a bevelled
  step) under clean uniform shading: the detailed rendered data of the second stage.

A third look, ``captured``, is for held-out scoring only: the synthetic domain's detailed geometry under the
real domain's light, albedo texture and sensor noise, i.e. a photograph of a detailed object (the paper scores
NE / SNE on real captures of detailed objects). No training split uses it.

``write_split`` writes one ``<index>.npz`` per sample (``image`` float32 [H, W, 3] in [0, 1], ``normals``
float32 [H, W, 3] unit, ``mask`` bool [H, W]); ``training/nirne/data.py`` reads them back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backend.atomic import write_atomic

DOMAINS = ("real", "synthetic", "captured")
"Every look ``make_sample`` draws (index: its RNG stream); the trainer's stages read real and synthetic only."


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates x (right) and y (up) in [-1, 1], each [S, S]."""
    c = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    x, y = np.meshgrid(c, -c)  # row 0 is the top: y decreases downward
    return x, y


def _dome(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Elliptical silhouette [S, S] bool and the dome height on it."""
    a, b = rng.uniform(0.6, 0.85, 2)
    cx, cy = rng.uniform(-0.08, 0.08, 2)
    r2 = ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2
    mask = r2 < 1.0
    height = rng.uniform(0.3, 0.6) * np.sqrt(np.clip(1.0 - r2, 0.0, None))
    return mask, height


def _bumps(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, count: int) -> np.ndarray:
    z = np.zeros_like(x)
    for _ in range(count):
        cx, cy = rng.uniform(-0.5, 0.5, 2)
        s = rng.uniform(0.2, 0.4)
        z += rng.uniform(-0.15, 0.15) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s * s))
    return z


def _details(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Sharp detail: a triangle-wave groove pattern along a random direction and a bevelled step."""
    angle = rng.uniform(0.0, np.pi)
    along = np.cos(angle) * x + np.sin(angle) * y
    period = rng.uniform(10.0, 16.0) * 2.0 / size  # 10 to 16 pixels
    phase = np.mod(along / period + rng.uniform(), 1.0)
    grooves = rng.uniform(0.03, 0.05) * np.abs(2.0 * phase - 1.0)
    cut = np.cos(angle + np.pi / 2) * x + np.sin(angle + np.pi / 2) * y - rng.uniform(-0.3, 0.3)
    bevel = 3.0 * 2.0 / size
    step = rng.uniform(0.04, 0.08) * np.clip(cut / bevel, 0.0, 1.0)
    return grooves + step


def normals_of(height: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Unit camera-space normals [S, S, 3] of a height field (x right, y up); (0, 0, 1) outside ``mask``."""
    size = height.shape[0]
    spacing = 2.0 / size
    dz_drow, dz_dcol = np.gradient(height, spacing)
    n = np.stack([-dz_dcol, dz_drow, np.ones_like(height)], axis=-1)  # dz/dy = -dz/drow
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    n[~mask] = (0.0, 0.0, 1.0)
    return n.astype(np.float32)


def _shade(normals: np.ndarray, mask: np.ndarray, rng: np.random.Generator, domain: str) -> np.ndarray:
    size = mask.shape[0]
    if domain in ("real", "captured"):
        light = np.array([rng.uniform(-0.6, 0.6), rng.uniform(-0.6, 0.6), 1.0])
        x, y = _grid(size)
        base = rng.uniform(0.4, 0.9, 3)
        f = rng.uniform(2.0, 6.0, 2)
        texture = 0.15 * np.sin(f[0] * np.pi * x + rng.uniform(0, 6)) * np.cos(f[1] * np.pi * y)
        albedo = np.clip(base + texture[..., None], 0.05, 1.0)
        ambient = rng.uniform(0.15, 0.35)
    else:
        light = np.array([0.3, 0.4, 1.0])
        albedo = np.full((size, size, 3), 0.75)
        ambient = 0.25
    light = light / np.linalg.norm(light)
    diffuse = np.clip(normals @ light, 0.0, None)[..., None]
    image = albedo * (ambient + (1.0 - ambient) * diffuse)
    if domain in ("real", "captured"):
        image = image + rng.normal(0.0, 0.02, image.shape)
    image[~mask] = 1.0
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def make_sample(domain: str, size: int, seed: int) -> dict[str, np.ndarray]:
    """One sample of ``domain`` (real, synthetic or captured): ``image`` [S, S, 3], ``normals`` [S, S, 3],
    ``mask`` [S, S]."""
    if domain not in DOMAINS:
        raise ValueError(f"domain {domain!r} must be one of {', '.join(DOMAINS)}")
    if not 16 <= size <= 1024 or size % 8:
        raise ValueError(f"size {size} must be a multiple of 8 in [16, 1024]")
    rng = np.random.default_rng([seed, DOMAINS.index(domain)])
    x, y = _grid(size)
    mask, height = _dome(x, y, rng)
    height = height + _bumps(x, y, rng, 2)
    if domain in ("synthetic", "captured"):
        height = height + _details(x, y, rng, size)
    height = np.where(mask, height, 0.0)
    normals = normals_of(height, mask)
    return {"image": _shade(normals, mask, rng, domain), "normals": normals, "mask": mask}


def write_split(folder: Path, domain: str, count: int, size: int, seed: int) -> list[Path]:
    """Write ``count`` samples of ``domain`` to ``folder/<domain>/NNNNNN.npz``; returns the paths."""
    if not 1 <= count <= 1_000_000:
        raise ValueError(f"count {count} must be in [1, 1000000]")
    out = Path(folder) / domain
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        sample = make_sample(domain, size, seed * 1_000_003 + i)
        path = out / f"{i:06d}.npz"
        write_atomic(path, lambda tmp, s=sample: _save_npz(tmp, s))
        paths.append(path)
    return paths


def _save_npz(tmp: Path, sample: dict[str, np.ndarray]) -> None:
    with open(tmp, "wb") as f:
        np.savez(f, **sample)
