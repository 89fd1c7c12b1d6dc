"""Surface extraction on analytic SDFs laid out as decoder outputs: closed, manifold, outward, the right volume;
marching cubes on the bounding box equals the release's full grid; FlexiCubes' weights do what the paper says."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from backend.errors import EmptyResult
from backend.mesh import flexicubes as fc
from backend.mesh.cleanup import remove_inner_shells
from backend.mesh.decoder_layout import CORNERS, grid_vertices, split_features
from backend.mesh.flexicubes import extract_flexicubes
from backend.mesh.marching_cubes import extract_marching_cubes

RES = 64
EXTRACTORS = {"marching_cubes": extract_marching_cubes, "flexicubes": extract_flexicubes}


def sphere(p: np.ndarray) -> np.ndarray:
    return np.linalg.norm(p, axis=-1) - 0.3


def torus(p: np.ndarray) -> np.ndarray:
    q = np.stack([np.linalg.norm(p[..., :2], axis=-1) - 0.25, p[..., 2]], -1)
    return np.linalg.norm(q, axis=-1) - 0.1


def rounded_box(p: np.ndarray) -> np.ndarray:
    q = np.abs(p) - np.array([0.3, 0.2, 0.15]) + 0.05
    return np.linalg.norm(np.maximum(q, 0.0), axis=-1) + np.minimum(q.max(-1), 0.0) - 0.05


def plate(p: np.ndarray) -> np.ndarray:
    q = np.abs(p) - np.array([0.35, 0.35, 0.04])
    return np.linalg.norm(np.maximum(q, 0.0), axis=-1) + np.minimum(q.max(-1), 0.0)


def _box_volume() -> float:
    a, b, c = np.array([0.25, 0.15, 0.1]) * 2  # the box shrunk by the radius, Minkowski-summed with a ball
    r = 0.05
    return a * b * c + 2 * r * (a * b + b * c + a * c) + np.pi * r**2 * (a + b + c) + 4 / 3 * np.pi * r**3


VOLUMES = {sphere: 4 / 3 * np.pi * 0.3**3, torus: 2 * np.pi**2 * 0.25 * 0.1**2, rounded_box: _box_volume(),
           plate: 0.7 * 0.7 * 0.08}
SHAPES = list(VOLUMES)


def decoder_outputs(sdf, res: int = RES, band: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Occupied cubes and their 101 channels: every cube with a corner inside (band None), or like the real
    decoder only the cubes within ``band`` (object units) of the surface."""
    grid = np.stack(np.meshgrid(*[np.arange(res)] * 3, indexing="ij"), -1).reshape(-1, 3)  # [R^3, 3]
    corners = grid[:, None, :] + CORNERS.numpy()[None]  # [R^3, 8, 3]
    values = sdf(corners / res - 0.5)  # [R^3, 8] in object units
    occupied = (values < 1.5 / res).any(1) if band is None else (np.abs(values) < band).any(1)
    feats = np.zeros((occupied.sum(), 101), np.float32)
    feats[:, :8] = values[occupied] + 1.0 / res  # the decoder's sdf before the release's -1/res bias
    return torch.from_numpy(grid[occupied]), torch.from_numpy(feats)


def assert_closed_manifold_outward(v: np.ndarray, f: np.ndarray) -> trimesh.Trimesh:
    mesh = trimesh.Trimesh(v, f, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent  # every edge in exactly two faces, one each way
    assert _vertices_are_manifold(f)
    assert mesh.volume > 0  # outward
    return mesh


def _vertices_are_manifold(f: np.ndarray) -> bool:
    """Closed, consistently wound mesh: the face corners around each vertex form a single fan."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = int(f.max()) + 1
    start, end = f.reshape(-1), np.roll(f, -1, axis=1).reshape(-1)  # half-edge k of face i: corner 3i + k
    key = start.astype(np.int64) * n + end
    order = np.argsort(key)
    twin = order[np.searchsorted(key[order], end.astype(np.int64) * n + start)]  # the opposite half-edge
    c_start = np.arange(len(start))
    c_end = (c_start // 3) * 3 + (c_start % 3 + 1) % 3
    links = np.concatenate([[c_start, c_end[twin]], [c_end, c_start[twin]]], axis=1)  # same vertex, adjacent faces
    graph = coo_matrix((np.ones(links.shape[1]), (links[0], links[1])), shape=(len(start), len(start)))
    fans, _ = connected_components(graph, directed=False)
    return fans == len(np.unique(f))


@pytest.mark.parametrize("mode", EXTRACTORS)
@pytest.mark.parametrize("sdf", SHAPES, ids=lambda f: f.__name__)
def test_closed_outward_accurate(sdf, mode):
    cubes, feats = decoder_outputs(sdf)
    v, f = EXTRACTORS[mode](cubes, feats, RES)
    assert v.dtype == np.float32 and f.dtype == np.int32 and np.abs(v).max() <= 0.5
    mesh = assert_closed_manifold_outward(v, f)
    assert abs(mesh.volume - VOLUMES[sdf]) / VOLUMES[sdf] < 0.02, (mesh.volume, VOLUMES[sdf])


@pytest.mark.parametrize("mode", EXTRACTORS)
def test_band_of_cubes_gives_outer_surface_and_inner_wall(mode):
    """The real decoder covers only a band: the uncovered inside reads as outside, so a hollow appears."""
    cubes, feats = decoder_outputs(sphere, band=3.0 / RES)
    v, f = EXTRACTORS[mode](cubes, feats, RES)
    mesh = trimesh.Trimesh(v, f, process=False)
    assert mesh.is_watertight and len(mesh.split(only_watertight=False)) == 2
    v, f = remove_inner_shells(v, f)
    mesh = assert_closed_manifold_outward(v, f)
    assert abs(mesh.volume - VOLUMES[sphere]) / VOLUMES[sphere] < 0.02


@pytest.mark.parametrize("offset", [0, 20], ids=["touching_the_grid_side", "cut_open"])
def test_bounding_box_equals_full_grid(offset):
    cubes, feats = decoder_outputs(lambda p: sphere(p - 0.0) if offset else torus(p * 0.6), res=48)
    if offset:
        keep = (cubes[:, 0] >= offset).numpy()  # cut the sphere open: the region is far from most sides
        cubes, feats = cubes[keep], feats[keep]
    v_box, f_box = extract_marching_cubes(cubes, feats, 48)
    v_full, f_full = extract_marching_cubes(cubes, feats, 48, full_grid=True)
    assert np.array_equal(f_box, f_full)
    assert np.allclose(v_box, v_full, atol=1e-6)


@pytest.mark.parametrize("mode", EXTRACTORS)
def test_empty_surface_is_an_actionable_error(mode):
    cubes, feats = decoder_outputs(sphere, res=16)
    feats[:, :8] = 1.0  # everything outside
    with pytest.raises(EmptyResult) as info:
        EXTRACTORS[mode](cubes, feats, 16)
    assert "seed" in info.value.hint
    with pytest.raises(EmptyResult):
        EXTRACTORS[mode](cubes[:0], feats[:0], 16)


@pytest.mark.parametrize("mode", EXTRACTORS)
def test_deformation_moves_vertices_within_half_a_cube(mode):
    cubes, feats = decoder_outputs(sphere, res=32)
    v0, _ = EXTRACTORS[mode](cubes, feats, 32)
    feats[:, 8:32] = 10.0  # tanh -> 1: every corner moves +half a cube on each axis
    v1, _ = EXTRACTORS[mode](cubes, feats, 32)
    assert np.allclose(v1 - v0, 0.5 / 32, atol=1e-4)


@pytest.mark.parametrize("mode", EXTRACTORS)
def test_random_fields_give_closed_meshes(mode):
    """Noise everywhere (every ambiguous case shows up): still closed, consistently wound, outward overall."""
    res, g = 14, torch.Generator().manual_seed(3)
    grid = torch.stack(torch.meshgrid(*[torch.arange(res)] * 3, indexing="ij"), -1).reshape(-1, 3)
    cubes = grid[(grid > 0).all(1) & (grid < res - 1).all(1)]
    feats = torch.randn(len(cubes), 101, generator=g)
    v, f = EXTRACTORS[mode](cubes, feats, res)
    mesh = trimesh.Trimesh(v, f, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0


def test_flexicubes_resolves_ambiguous_faces():
    res, g = 14, torch.Generator().manual_seed(3)
    grid = torch.stack(torch.meshgrid(*[torch.arange(res)] * 3, indexing="ij"), -1).reshape(-1, 3)
    feats = torch.randn(len(grid), 101, generator=g)
    parts = split_features(feats)
    surf = fc.surface_cubes(grid_vertices(grid, parts.sdf - 1 / res, parts.deform, res), res)
    raw = ((surf.sdf < 0).long() * 2 ** torch.arange(8)).sum(1)
    resolved = fc.case_ids(surf, res)
    changed = torch.nonzero(resolved != raw)[:, 0]
    assert len(changed) > 0 and all(int(c) in fc.AMBIGUOUS for c in raw[changed])


def _one_cube(sdf: list[float], weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    feats = torch.zeros(1, 101)
    feats[0, :8] = torch.tensor(sdf) + 1.0 / 4  # undo the bias
    if weights is not None:
        feats[0, 32:53] = weights
    return torch.tensor([[1, 1, 1]]), feats


def _dual_vertex(cubes: torch.Tensor, feats: torch.Tensor, res: int = 4) -> torch.Tensor:
    parts = split_features(feats)
    surf = fc.surface_cubes(grid_vertices(cubes, parts.sdf - 1 / res, parts.deform, res), res)
    beta, alpha, _ = fc.normalize_weights(fc.cube_weights(cubes, parts.weights, surf.keys, res), fc.WEIGHT_SCALE)
    centre = torch.all(surf.coords == torch.tensor([1, 1, 1]), dim=1)
    vertices, vertex_cube, _ = fc.dual_vertices(surf, fc.case_ids(surf, res), beta, alpha)
    return vertices[vertex_cube == torch.nonzero(centre)[0, 0]]


def test_dual_vertex_is_the_beta_weighted_mean_of_alpha_weighted_crossings():
    sdf = [-0.5, 1.5, 0.5, 1.0, 0.5, 1.0, 1.0, 1.0]  # corner 0 inside: crossings on edges 0 (x), 3 (z), 8 (y)
    origin = torch.tensor([1 / 4 - 0.5] * 3)
    vd = _dual_vertex(*_one_cube(sdf))[0]
    crossings = origin + torch.tensor([[0.25, 0, 0], [0, 0, 0.5], [0, 0.5, 0]]) / 4  # linear zero crossings
    assert torch.allclose(vd, crossings.mean(0), atol=1e-6)
    w = torch.zeros(21)
    w[0], w[3], w[8] = 10.0, -10.0, -10.0  # beta of edge 0 -> 1.99, edges 3 and 8 -> 0.01
    w[12] = 10.0  # alpha at corner 0 -> 1.99: the crossing on edge 0 moves away from corner 0
    vd = _dual_vertex(*_one_cube(sdf, w))[0]
    beta = torch.tensor([1.99, 0.01, 0.01])
    t0 = 0.5 * 1.99 / (0.5 * 1.99 + 1.5)  # zero of the alpha-weighted sdf along edge 0
    moved = crossings.clone()
    moved[0, 0] = origin[0] + t0 / 4
    moved[1:] = origin + torch.tensor([[0, 0, 0.5 * 1.99 / (0.5 * 1.99 + 0.5)], [0, 0.5 * 1.99 / 1.495, 0]]) / 4
    assert torch.allclose(vd, (beta[:, None] * moved).sum(0) / beta.sum(), atol=1e-5)


def test_gamma_picks_the_diagonal():
    quads = torch.tensor([[0, 1, 2, 3]])
    along_02 = fc.split_quads(quads, torch.tensor([0.9, 0.1, 0.9, 0.1]))
    along_13 = fc.split_quads(quads, torch.tensor([0.1, 0.9, 0.1, 0.9]))
    assert along_02.tolist() == [[0, 1, 2], [0, 2, 3]] and along_13.tolist() == [[0, 1, 3], [3, 1, 2]]


CHECKERBOARD = [-1.31, 1.65, 0.18, -1.25, 0.61, -1.83, -0.13, 1.49]  # CORNERS order: inside where x + y + z is even


def _trilinear_reference(cubes: torch.Tensor, feats: torch.Tensor, res: int) -> tuple[np.ndarray, np.ndarray]:
    """The release's way, written out for one grid: dense sdf and deformed grid (untouched points not moved),
    scikit-image's vertices, each placed by trilinear interpolation over the 8 corners of its cube."""
    from skimage.measure import marching_cubes

    n = res + 1
    sdf = np.ones((n, n, n), np.float32)  # [n, n, n]
    grid = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), -1).astype(np.float64)  # [n, n, n, 3]
    deformed = grid / res - 0.5  # [n, n, n, 3]
    for cube, f in zip(cubes.numpy(), feats.numpy()):  # one cube per corner in these tests: no averaging
        for k, corner in enumerate(CORNERS.numpy()):
            x, y, z = cube + corner
            sdf[x, y, z] = f[k] - 1.0 / res
            deformed[x, y, z] += (1.0 - 1e-8) / (2.0 * res) * np.tanh(f[8 + 3 * k: 11 + 3 * k])
    verts, _, _, _ = marching_cubes(sdf, level=0.0, gradient_direction="ascent")
    base = np.minimum(np.floor(verts).astype(int), res - 1)  # [V, 3]
    frac = verts - base  # [V, 3]
    out = np.zeros_like(frac)
    for corner in CORNERS.numpy():
        weight = np.where(corner == 1, frac, 1.0 - frac).prod(1)  # [V]
        x, y, z = (base + corner).T
        out += weight[:, None] * deformed[x, y, z]
    return verts, out


def test_vertices_inside_an_ambiguous_cube_are_trilinear_in_the_deformed_corners():
    """A checkerboard cube: Lewiner resolves it with a vertex inside the cube (three fractional coordinates)."""
    res = 6
    cubes = torch.tensor([[2, 2, 2]])
    feats = torch.zeros(1, 101)
    feats[0, :8] = torch.tensor(CHECKERBOARD) + 1.0 / res  # undo the bias
    feats[0, 8:32] = torch.randn(24, generator=torch.Generator().manual_seed(5)) * 2.0
    index_space, expected = _trilinear_reference(cubes, feats, res)
    fractional = (np.abs(index_space - np.round(index_space)) > 1e-6).sum(1)  # [V]
    assert (fractional == 3).any()  # the case this test is about is present
    for full_grid in (False, True):
        v, f = extract_marching_cubes(cubes, feats, res, full_grid=full_grid)
        assert np.allclose(v, expected, atol=1e-6)
        assert_closed_manifold_outward(v, f)
