"""UVs and baking for full-3D meshes (backend/bake): a known mesh, a known camera and a picture rendered from
it; the baked, textured mesh seen again from that camera reproduces the picture and the normal map, and the
result's files carry the textures."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest

from backend.camera import look_at, make_camera
from backend.errors import BadInput, Cancelled
from backend.jobs import JobContext
from tests.backend.bake_scene import picture, view
from tests.backend.shapes import bust, chair, suzanne

PSNR_FLOOR = 30.0
"dB on the visible foreground; the bust measures about 46 dB, Suzanne 37, the chair of boxes 34."


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def baked_bust():
    from backend.bake.bake import BakeOptions, bake_mesh

    vertices, faces = bust()
    camera = view()
    rgb, normals, mask = picture(vertices, faces, camera)
    return bake_mesh(vertices, faces, None, camera, rgb, normals, mask, BakeOptions(size=512)), camera, rgb, \
        normals, mask


def test_unwrap_gives_one_atlas_whose_charts_keep_the_winding():
    from backend.bake.unwrap import UnwrapOptions, unwrap
    from backend.mesh.shading import textured_faces

    vertices, faces = suzanne()
    out = unwrap(vertices, faces, options=UnwrapOptions(resolution=256))
    assert len(out.faces) == len(faces) and len(out.vertices) >= len(vertices)
    np.testing.assert_array_equal(out.vertices, vertices[out.source])
    np.testing.assert_array_equal(out.source[out.faces], faces)  # same faces, same order, same winding
    assert out.uvs.min() >= 0.0 and out.uvs.max() <= 1.0
    assert textured_faces(out.faces, out.uvs).mean() > 0.99, "no chart comes out mirrored"
    assert out.charts > 1 and 0.3 < out.utilization <= 1.0


def test_a_mesh_unwrapped_in_pieces_keeps_every_face_and_one_atlas():
    from backend.bake.unwrap import UnwrapOptions, unwrap
    from backend.mesh.shading import textured_faces

    vertices, faces = suzanne()
    whole = unwrap(vertices, faces, options=UnwrapOptions(resolution=256))
    split = unwrap(vertices, faces, options=UnwrapOptions(resolution=256, piece_faces=len(faces) // 5))
    np.testing.assert_array_equal(split.vertices, vertices[split.source])
    np.testing.assert_array_equal(split.source[split.faces], faces)  # same faces, same order, same winding
    assert split.uvs.min() >= 0.0 and split.uvs.max() <= 1.0
    assert textured_faces(split.faces, split.uvs).mean() > 0.99
    assert split.charts >= whole.charts, "a piece's border is a seam: never fewer charts"
    uv_tri = split.uvs[split.faces]  # [F, 3, 2]
    e1, e2 = uv_tri[:, 1] - uv_tri[:, 0], uv_tri[:, 2] - uv_tri[:, 0]  # [F, 2]
    area = 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
    assert (area > 0).mean() > 0.99 and area.sum() <= 1.0, "the pieces' charts share one atlas, none on top"


def test_the_baked_mesh_reproduces_the_picture_from_the_input_view(baked_bust):
    from backend.bake.preview import psnr, render_textured

    baked, camera, rgb, _, mask = baked_bust
    seen, drawn = render_textured(baked.vertices, baked.faces, baked.uvs,
                                  baked.images.base_color[..., :3] / 255.0, camera)
    both = mask & drawn
    assert both.sum() >= 0.99 * mask.sum()
    assert psnr(seen[both], rgb[both]) >= PSNR_FLOOR


def test_the_baked_normal_texture_shades_as_predicted(baked_bust):
    from backend.bake.preview import render_normal_mapped

    baked, camera, _, normals, mask = baked_bust
    shading, drawn = render_normal_mapped(baked.vertices, baked.faces, baked.normals, baked.uvs,
                                          baked.images.normals, camera)
    both = mask & drawn
    angle = np.degrees(np.arccos(np.clip((shading[both] * normals[both]).sum(-1), -1.0, 1.0)))
    assert angle.mean() < 2.0 and np.percentile(angle, 95) < 5.0


def test_the_unseen_side_takes_the_seen_mean_and_no_texel_stays_empty(baked_bust):
    baked, *_ = baked_bust
    color = baked.images.base_color
    seen = color[..., 3] == 255
    assert 0.1 < seen.mean() < 0.9  # one view sees part of the surface
    low, high = round(0.1 * 255) - 1, round(0.9 * 255) + 1
    assert color[..., :3].min() >= low and color[..., :3].max() <= high, "gutters are filled, never black"
    from backend.bake.texels import texel_map

    covered = texel_map(baked.uvs, baked.faces, color.shape[0]).covered
    flat = np.all(np.abs(baked.images.normals - (0.0, 0.0, 1.0)) < 1e-6, axis=-1)
    assert flat[covered & ~seen].all(), "unseen texels keep the geometry's own shading"
    assert np.allclose(np.linalg.norm(baked.images.normals, axis=-1), 1.0, atol=1e-4)


def test_an_occluded_part_takes_no_colour_from_its_occluder():
    from backend.bake.bake import BakeOptions, bake_mesh

    vertices, faces = chair()
    camera = make_camera(*look_at([0.0, -3.0, 0.3], [0.0, 0.0, 0.0]), 128, 128, fov=math.radians(35))
    rgb, normals, mask = picture(vertices, faces, camera)
    baked = bake_mesh(vertices, faces, None, camera, rgb, normals, mask, BakeOptions(size=256))
    back_of_the_back = baked.normals[:, 1] > 0.9  # the chair's back, facing away (+Y): never seen
    rows_cols = _texels_of(baked, back_of_the_back)
    assert len(rows_cols[0]) and (baked.images.base_color[rows_cols][:, 3] == 0).all()


def _texels_of(baked, vertex_pick: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    from backend.bake.texels import texel_map

    texels = texel_map(baked.uvs, baked.faces, baked.images.base_color.shape[0])
    picked = vertex_pick[baked.faces[texels.face]].all(axis=1)
    return texels.rows[picked], texels.cols[picked]


def test_bake_reports_progress_and_honours_cancel():
    from backend.bake.bake import BakeOptions, bake_mesh

    vertices, faces = suzanne()
    camera = view(64)
    rgb, normals, mask = picture(vertices, faces, camera)
    steps: list[tuple[str, int]] = []
    ctx = JobContext(report=lambda stage, step, total, message: steps.append((stage, step)))
    bake_mesh(vertices, faces, None, camera, rgb, normals, mask, BakeOptions(size=128), ctx)
    assert steps == [("texture", i) for i in range(6)]

    ctx = JobContext()

    def cancel_after_unwrap(stage: str, step: int, total: int, message: str) -> None:
        if step == 1:
            ctx.cancel_event.set()

    ctx = JobContext(report=cancel_after_unwrap)
    with pytest.raises(Cancelled):
        bake_mesh(vertices, faces, None, camera, rgb, normals, mask, BakeOptions(size=128), ctx)


def test_a_picture_that_does_not_fit_the_camera_is_refused():
    from backend.bake.bake import bake_mesh

    vertices, faces = suzanne()
    camera = view(64)
    with pytest.raises(BadInput, match="camera's size"):
        bake_mesh(vertices, faces, None, camera, np.zeros((32, 64, 3)), np.zeros((64, 64, 3)),
                  np.ones((64, 64), bool))


def test_the_glb_and_obj_carry_the_uvs_and_both_textures(tmp_path, baked_bust):
    import pygltflib
    from PIL import Image

    from backend.engines.base import EngineResult, MeshData, NormalMapData
    from backend.result_files import write_result

    baked, camera, _, normals, mask = baked_bust
    mesh = MeshData("bust", baked.vertices, baked.faces, baked.normals, baked.uvs, baked=baked.images)
    result = EngineResult(meshes=[mesh], normal_map=NormalMapData(normals, mask))
    write_result(result, tmp_path, "bust", "glb", "opengl")
    gltf = pygltflib.GLTF2().load(str(tmp_path / "bust.glb"))
    (primitive, *_) = gltf.meshes[0].primitives
    assert primitive.attributes.TEXCOORD_0 is not None
    material = gltf.materials[primitive.material]
    assert material.normalTexture is not None and material.pbrMetallicRoughness.baseColorTexture is not None
    blob = gltf.binary_blob()
    sizes = []
    for image in gltf.images:
        view = gltf.bufferViews[image.bufferView]
        data = blob[view.byteOffset:view.byteOffset + view.byteLength]
        sizes.append(Image.open(io.BytesIO(data)).size)
    assert sizes == [(512, 512), (512, 512)]
    write_result(result, tmp_path, "obj", "obj", "opengl")
    mtl = (tmp_path / "obj.mtl").read_text()
    assert "obj_color.png" in mtl and "obj_normal.png" in mtl
    assert Image.open(tmp_path / "obj_color.png").size == (512, 512)


def test_the_engine_textures_the_aligned_mesh_and_notes_when_it_cannot(monkeypatch):
    import backend.pipelines.hi3dgen as geometry
    from backend.engines.base import EngineRequest, validate_params
    from backend.engines.hi3dgen import PARAMS, Hi3DGenEngine
    from backend.images import LoadedImage
    from backend.server import texture_frames
    from backend.settings import BackendSettings

    vertices, faces = suzanne()
    truth = make_camera(*look_at([1.6, -2.2, 1.1], [0.02, 0.0, -0.03]), 120, 100, fov=math.radians(40))
    rgb, normals, mask = picture(vertices, faces, truth)
    alpha = mask.astype(np.float32)[..., None]
    image = LoadedImage(np.dstack([rgb, alpha]), True, "RGBA")
    given = LoadedImage(np.dstack([(normals + 1) / 2, alpha]).astype(np.float32), True, "RGBA")
    monkeypatch.setattr(geometry, "generate_geometry", lambda models, condition, params, ctx: (vertices, faces, {}))
    engine = Hi3DGenEngine(BackendSettings())
    monkeypatch.setattr(engine, "_models", lambda request, ctx: None)
    monkeypatch.setattr(engine, "_require_weights", lambda request, geometry: None)
    stages: list[str] = []
    ctx = JobContext(report=lambda stage, step, total, message: stages.append(stage))
    params = validate_params(PARAMS, {"remove_floaters": False})
    result = engine.generate(EngineRequest(image, "monkey", 0, params, normal_map=given), ctx)
    assert "texture" in stages
    stats = json.loads(json.dumps(result.stats["texture"]))
    assert stats["baked"] and stats["atlas"] == 1024 and "unwrap" in stats["seconds"]
    mesh = result.meshes[0]
    assert mesh.uvs is not None and mesh.baked is not None and len(mesh.uvs) == len(mesh.vertices)
    frames = texture_frames(0, mesh, result)
    assert sorted(f.role for f in frames) == ["base_color", "normal"]
    assert all(f.pixels.shape[:2] == (1024, 1024) for f in frames)

    off = validate_params(PARAMS, {"remove_floaters": False, "align": False})
    untextured = engine.generate(EngineRequest(image, "monkey", 0, off, normal_map=given), ctx)
    assert untextured.meshes[0].uvs is None and "align" in untextured.stats["texture"]["note"]
    assert "texture" not in engine.generate(EngineRequest(image, "monkey", 0, {**off, "texture": False},
                                                          normal_map=given), ctx).stats
