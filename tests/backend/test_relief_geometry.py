"""The relief's geometry: a sub-pixel outline, smooth walls, texture kept out of the shape, a face budget."""

from __future__ import annotations

import io

import numpy as np
import pytest
import trimesh
from PIL import Image

from backend.engines.base import EngineRequest, validate_params
from backend.engines.relief import DEFAULT_FACES, ReliefEngine, shading_detail, soft_grid
from backend.images import LoadedImage
from backend.jobs import JobContext
from backend.relief.mesh import relief_mesh

from .conftest import blob_rgba


def _disc(side: int, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[:side, :side] + 0.5
    return (xx - side / 2) ** 2 + (yy - side / 2) ** 2 < radius**2


def _closed_manifold(mesh) -> trimesh.Trimesh:
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    assert tm.is_watertight and tm.is_winding_consistent and tm.volume > 0
    _, counts = np.unique(np.sort(tm.edges, axis=1), axis=0, return_counts=True)
    assert (counts == 2).all()  # every edge shared by exactly two faces
    return tm


def _walls(tm: trimesh.Trimesh) -> np.ndarray:
    return np.flatnonzero(np.abs(tm.face_normals[:, 1]) < 1e-4)  # the side walls are vertical


def test_disc_outline_lies_within_a_tenth_of_a_cell_of_the_circle():
    """A disc mask of 1024 px on a 256-cell grid (the engine's path): every wall vertex within 0.1 cell of
    the true circle. The pixel staircase of the cells is 0.5 to 0.7 cell off it."""
    res, radius = 256, 430.0
    field = soft_grid(_disc(1024, radius), res)
    mesh = relief_mesh(np.zeros(field.shape), field, thickness=0.05)
    tm = _closed_manifold(mesh)
    rim = np.unique(mesh.faces[_walls(tm)])
    world = np.linalg.norm(mesh.vertices[rim][:, [0, 2]].astype(np.float64), axis=1)  # centred on the disc
    cells = world * 2 * radius * res / 1024  # the outline's long side (the diameter) is 1
    deviation = cells - radius * res / 1024
    assert np.abs(deviation).max() < 0.1, np.abs(deviation).max()
    assert len(rim) > 2 * 2 * np.pi * radius * res / 1024  # front and back: over a vertex a cell each


def test_wall_normals_turn_smoothly_around_the_rim():
    """No picket fence: walls face outward along the radius, and neighbouring wall faces differ by a
    few degrees at most (the staircase alternates 0 and 90 degrees)."""
    res, radius = 128, 215.0
    field = soft_grid(_disc(512, radius), res)
    mesh = relief_mesh(np.zeros(field.shape), field, thickness=0.05)
    tm = _closed_manifold(mesh)
    walls = _walls(tm)
    centre = tm.triangles_center[walls][:, [0, 2]]
    normal = tm.face_normals[walls][:, [0, 2]]
    radial = centre / np.linalg.norm(centre, axis=1, keepdims=True)
    off_radial = np.degrees(np.arccos(np.clip((normal * radial).sum(axis=1), -1.0, 1.0)))
    assert off_radial.max() < 5.0, off_radial.max()
    order = np.argsort(np.arctan2(centre[:, 1], centre[:, 0]))
    angle = np.arctan2(normal[order, 1], normal[order, 0])
    turn = np.degrees(np.abs(np.angle(np.exp(1j * (np.roll(angle, -1) - angle)))))
    assert turn.max() < 5.0, turn.max()


@pytest.mark.parametrize("seed", range(4))
def test_saddles_holes_and_thin_parts_give_a_closed_manifold(seed):
    """Marching squares on a noisy soft mask (many pieces, holes, saddles, one-cell lines); a face budget
    never makes it invalid."""
    rng = np.random.default_rng(seed)
    field = rng.random((40, 50))
    field[10, 5:45] = 1.0  # a line one cell wide
    heights = rng.random(field.shape) * 0.05
    mesh = relief_mesh(heights, field, thickness=0.05)
    _closed_manifold(mesh)
    assert mesh.uvs.shape == (len(mesh.vertices), 2) and mesh.uvs.min() >= 0 and mesh.uvs.max() <= 1
    smaller = relief_mesh(heights, field, thickness=0.05, target_faces=len(mesh.faces) // 2)
    _closed_manifold(smaller)  # decimated where the decimation keeps it valid, else the full mesh
    assert len(smaller.faces) <= len(mesh.faces)


def _noisy_flat_disc(side: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A flat grey disc with pixel noise (std 0.1) saved as a JPEG at quality 50; RGBA float and mask."""
    rng = np.random.default_rng(seed)
    mask = _disc(side, 0.4 * side)
    grey = np.clip(0.5 + rng.normal(0.0, 0.1, (side, side)), 0.0, 1.0)
    buf = io.BytesIO()
    Image.fromarray((np.repeat(grey[..., None], 3, -1) * 255).astype(np.uint8)).save(buf, "JPEG", quality=50)
    rgb = np.asarray(Image.open(buf), np.float32) / 255.0
    return np.dstack([rgb, mask]).astype(np.float32), mask


def test_default_detail_keeps_texture_noise_out_of_the_shape():
    rgba, mask = _noisy_flat_disc()
    size = np.sqrt(mask.sum())
    shape, texture = shading_detail(rgba, mask, "shape"), shading_detail(rgba, mask, "texture")
    assert shape[mask].std() < 0.3 * texture[mask].std()
    assert shape[mask].std() < 0.002 * size  # near flat: a fifth of a per cent of the object's size


def test_default_detail_keeps_shading_that_is_shape():
    """A bright bump and a dark dent, wide and smooth: the edge-aware filter leaves them as they are."""
    side = 256
    yy, xx = np.mgrid[:side, :side] + 0.5
    mask = _disc(side, 0.4 * side)
    lum = (0.5 + 0.3 * np.exp(-((xx - 115) ** 2 + (yy - 128) ** 2) / (2 * 10.0**2))
           - 0.3 * np.exp(-((xx - 160) ** 2 + (yy - 128) ** 2) / (2 * 8.0**2)))
    rgba = np.dstack([np.repeat(lum[..., None], 3, -1), mask]).astype(np.float32)
    shape, texture = shading_detail(rgba, mask, "shape"), shading_detail(rgba, mask, "texture")
    assert np.corrcoef(shape[mask], texture[mask])[0, 1] > 0.98
    assert shape[mask].std() > 0.8 * texture[mask].std()


def _generate(rgba: np.ndarray, **params) -> tuple[np.ndarray, np.ndarray, dict]:
    image = LoadedImage(np.asarray(rgba, np.float32) / (255.0 if rgba.dtype == np.uint8 else 1.0), True, "RGBA")
    out = ReliefEngine().generate(EngineRequest(image, "t", 0, validate_params(ReliefEngine.params, params)),
                                  JobContext())
    return out.meshes[0].vertices, out.meshes[0].faces, out.stats


def test_noisy_flat_object_gives_a_smooth_surface_at_default_detail():
    """Through the engine, inflated normals: the noise's share of the front surface (vs detail 0) is a
    fraction of what the texture mode embosses."""
    rgba, _ = _noisy_flat_disc()
    full = {"faces": 0, "normals": "inflate", "resolution": 128}
    plain = _generate(rgba, detail=0.0, **full)[0]
    shape = _generate(rgba, **full)[0]
    texture = _generate(rgba, detail_mode="texture", **full)[0]
    n = len(plain) // 2  # the same grid and outline: the same vertices, front then back

    def roughness(v: np.ndarray) -> float:
        return float((v[:n, 1] - plain[:n, 1]).std())

    assert roughness(shape) < 0.3 * roughness(texture), (roughness(shape), roughness(texture))


def test_face_budget_is_honoured_and_the_mesh_stays_closed():
    rgba = blob_rgba(256)
    v0, f0, s0 = _generate(rgba, faces=0)
    v, f, s = _generate(rgba)
    assert s0["faces"] == len(f0) > DEFAULT_FACES
    assert len(f) <= DEFAULT_FACES and s["faces"] == len(f) > 0.9 * DEFAULT_FACES
    small = _generate(rgba, faces=4000)
    assert len(small[1]) <= 4000
    for vertices, faces, tolerance in ((v, f, 0.005), (*small[:2], 0.08)):  # 4000: 5.1 % / 6.3 % off (two CPUs)
        mesh = trimesh.Trimesh(vertices, faces, process=False)
        assert mesh.is_watertight and mesh.is_winding_consistent
        assert np.isclose(mesh.volume, trimesh.Trimesh(v0, f0, process=False).volume, rtol=tolerance)
    # the outline is kept exactly: the same silhouette extent
    assert np.allclose(v[:, [0, 2]].min(axis=0), v0[:, [0, 2]].min(axis=0), atol=1e-6)
    assert np.allclose(v[:, [0, 2]].max(axis=0), v0[:, [0, 2]].max(axis=0), atol=1e-6)


def test_fold_repair_and_closed_manifold_check():
    from backend.relief.decimate import is_closed_manifold, without_folds

    points = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], np.float64)
    tetra = np.array([[0, 2, 1], [0, 1, 3], [1, 2, 3], [0, 3, 2]])
    assert is_closed_manifold(tetra)
    assert not is_closed_manifold(tetra[:3]) and not is_closed_manifold(tetra[:0])  # open, empty
    assert not is_closed_manifold(np.concatenate([tetra[:3], tetra[3:, ::-1]]))  # one face wound inward
    folded = np.concatenate([tetra, [[1, 2, 4], [4, 2, 1]]])  # a face and its reverse: four faces on 1-2
    assert not is_closed_manifold(folded)
    v, f = without_folds(points, folded)
    assert is_closed_manifold(f) and len(v) == 4 and len(f) == 4


def _rim_front_faces(mesh) -> tuple[np.ndarray, np.ndarray]:
    """(front faces with a vertex on the outline, every front face) of a relief mesh, as face indices."""
    v, f = mesh.vertices.astype(np.float64), mesh.faces
    back = np.isclose(v[:, 1], v[:, 1].max())
    front = np.flatnonzero(~back[f].any(axis=1))
    wall = back[f].any(axis=1) & ~back[f].all(axis=1)
    on_outline = np.zeros(len(v), bool)
    on_outline[f[wall].ravel()] = True
    on_outline &= ~back
    return front[on_outline[f[front]].any(axis=1)], front


def test_the_rim_continues_the_front_slope_no_flat_terrace():
    """A spherical cap meeting the outline at 60 degrees (the slope an inflated or predicted surface has
    there): the front faces along the rim face the way the cap does at their centre, not the camera. When
    an outline vertex took its inside sample's height, that outermost ring was a flat terrace (54 degrees
    off the cap on average): the light band along the rim with dashes where Auto Smooth cut it off."""
    res, side = 96, 384
    yy, xx = (np.mgrid[:res, :res] + 0.5) * (side / res)
    cap_radius = 0.4 * side / np.sin(np.radians(60.0))  # the sphere: its cap's edge lies on the disc's outline
    r2 = (xx - side / 2) ** 2 + (yy - side / 2) ** 2
    centre_depth = cap_radius * np.cos(np.radians(60.0))
    heights = np.maximum(np.sqrt(np.maximum(cap_radius**2 - r2, 0.0)) - centre_depth, 0.0) / side  # world units
    field = soft_grid(_disc(side, 0.4 * side), res)
    mesh = relief_mesh(heights, field, thickness=0.05)
    _closed_manifold(mesh)
    rim, front = _rim_front_faces(mesh)
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    centre = tm.triangles_center[rim].astype(np.float64)  # [R, 3]
    normal = tm.face_normals[rim]
    # the cap's normal at a face centre: from the sphere's centre (behind the front, on the axis) outward
    radial = np.hypot(centre[:, 0], centre[:, 2])
    scale = (2 * 0.4 * side) / side  # the outline's long side (the disc's diameter) is 1: cells -> world
    r_world = cap_radius / side / scale
    slope_sin = np.clip(radial / r_world, 0.0, 1.0)
    expected = np.stack([centre[:, 0] / np.maximum(radial, 1e-12) * slope_sin, -np.sqrt(1.0 - slope_sin**2),
                         centre[:, 2] / np.maximum(radial, 1e-12) * slope_sin], axis=1)
    off = np.degrees(np.arccos(np.clip((normal * expected).sum(axis=1), -1.0, 1.0)))
    tilt = np.degrees(np.arccos(np.clip(-normal[:, 1], -1.0, 1.0)))
    print(f"\nrim faces {len(rim)}: {off.mean():.1f} deg mean off the cap (p90 {np.percentile(off, 90):.1f}), "
          f"tilt median {np.median(tilt):.1f} (the cap: 55-60)")
    assert off.mean() < 12.0 and np.median(tilt) > 40.0
    assert len(rim) < 0.2 * len(front)


def _rim_zigzag(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Mean |height - the mean of its two neighbours| of the outline's front vertices, per outline edge
    length: how much the rim's front edge saws up and down (the dashes along a rim in a three-quarter view)."""
    v = vertices.astype(np.float64)
    back = np.isclose(v[:, 1], v[:, 1].max())
    wall = faces[back[faces].any(axis=1) & ~back[faces].all(axis=1)]
    pairs = [[k for k in face if not back[k]] for face in wall]
    edges = np.array([p for p in pairs if len(p) == 2])  # each wall quad's front edge, directed along the rim
    nxt = dict(edges.tolist())
    prv = {b: a for a, b in edges.tolist()}
    on = np.array([k for k in nxt if k in prv])
    after, before = np.array([nxt[k] for k in on]), np.array([prv[k] for k in on])
    lap = np.abs(v[on, 1] - 0.5 * (v[after, 1] + v[before, 1]))
    return float(np.mean(lap / np.linalg.norm(v[after] - v[on], axis=1)))


def test_the_rim_of_an_inflated_slanted_shape_does_not_saw():
    """A hard-edged ellipse turned 20 degrees (every stair step of its pixel outline slanted), inflated
    normals: the outline's front edge runs smoothly. Measured: 0.20 when outline vertices copied their inside
    sample's height, 0.30 with the slope continued alone (each crossing's own distance and axis), 0.06 with
    the heights evened along the outline and the inflation's pixel staircase blurred (Suzanne: 0.19, 0.34,
    0.08)."""
    side = 256
    yy, xx = np.mgrid[:side, :side] + 0.5
    a = np.radians(20.0)
    u = ((xx - side / 2) * np.cos(a) + (yy - side / 2) * np.sin(a)) / (0.42 * side)
    w = (-(xx - side / 2) * np.sin(a) + (yy - side / 2) * np.cos(a)) / (0.25 * side)
    mask = u**2 + w**2 < 1.0
    rgba = np.dstack([np.full((side, side, 3), 0.6), mask]).astype(np.float32)
    vertices, faces, _ = _generate(rgba, normals="inflate", detail=0.0, faces=0, resolution=128)
    zigzag = _rim_zigzag(vertices, faces)
    print(f"\nrim zigzag {zigzag:.3f}")
    assert zigzag < 0.12, zigzag
