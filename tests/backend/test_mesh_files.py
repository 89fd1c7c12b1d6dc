"""Complete mesh files: the CLI's GLB carries normals, UVs and an embedded normal texture; the OBJ gets its
MTL and PNG; the normal texture is the predicted map in the mesh's own tangent frame."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pygltflib
import pytest
import trimesh
from PIL import Image

from backend.mesh.export import MeshTextures, export_mesh
from backend.mesh.normal_texture import camera_to_mesh_frame, tangent_space_texture
from backend.mesh.shading import shaded_mesh, split_sharp_edges, textured_faces
from backend.normalmap import decode_png16, normalize

from .conftest import blob_rgba, png_bytes
from .test_cli import run_cli


def names_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def relief_glb(tmp_path_factory) -> Path:
    """The CLI's relief GLB and its normal map for a 128 px blob (64 cells)."""
    folder = tmp_path_factory.mktemp("glb")
    (folder / "blob.png").write_bytes(png_bytes(blob_rgba(128)))
    code, err = run_cli("generate", str(folder / "blob.png"), "-o", str(folder / "out"),
                        "--param", "resolution=64")
    assert code == 0, err
    return folder / "out"


def embedded(gltf: pygltflib.GLTF2, view_index: int) -> bytes:
    view = gltf.bufferViews[view_index]
    return gltf.binary_blob()[view.byteOffset:view.byteOffset + view.byteLength]


def test_the_cli_glb_has_normals_uvs_and_the_normal_map_embedded(relief_glb):
    assert names_in(relief_glb) == ["blob.glb", "blob_normal.png"]
    gltf = pygltflib.GLTF2().load(str(relief_glb / "blob.glb"))
    textured, plain = gltf.meshes[0].primitives  # the front; the back and walls
    for prim in (textured, plain):
        assert prim.attributes.NORMAL is not None and prim.attributes.TEXCOORD_0 is not None
    material = gltf.materials[textured.material]
    assert material.normalTexture is not None and material.normalTexture.texCoord == 0
    assert gltf.materials[plain.material].normalTexture is None
    image = gltf.images[gltf.textures[material.normalTexture.index].source]
    assert image.mimeType == "image/png" and image.uri is None  # embedded, not a file beside it
    png = embedded(gltf, image.bufferView)
    written = (relief_glb / "blob_normal.png").read_bytes()
    assert png == written
    pixels = decode_png16(png)
    assert pixels.dtype == np.uint16 and pixels.shape[2] == 3
    assert np.array_equal(pixels, decode_png16(written))


def crop_offset(crop: np.ndarray, image: np.ndarray) -> tuple[int, int] | None:
    """Where ``crop`` [h, w, 3] sits in ``image`` [H, W, 4] (RGBA): the offset at which the crop's texels
    equal the image's pixels wherever the image is opaque (and most of the window is)."""
    h, w = crop.shape[:2]
    for r in range(image.shape[0] - h + 1):
        for c in range(image.shape[1] - w + 1):
            window = image[r:r + h, c:c + w]
            opaque = window[..., 3] > 0
            if opaque.sum() > 0.4 * opaque.size and np.array_equal(crop[opaque], window[..., :3][opaque]):
                return r, c
    return None


def test_the_relief_glb_takes_the_image_crop_as_base_colour(relief_glb):
    """baseColorTexture is the input's pixels over the crop the UVs span (the normal texture's frame): the
    object's texels equal the input's at one offset; the texels off the object repeat object colours."""
    gltf = pygltflib.GLTF2().load(str(relief_glb / "blob.glb"))
    textured, plain = gltf.meshes[0].primitives
    pbr = gltf.materials[textured.material].pbrMetallicRoughness
    assert pbr.baseColorTexture is not None and pbr.baseColorTexture.texCoord == 0
    assert pbr.baseColorFactor == [1.0, 1.0, 1.0, 1.0]
    assert gltf.materials[plain.material].pbrMetallicRoughness.baseColorTexture is None
    image = gltf.images[gltf.textures[pbr.baseColorTexture.index].source]
    colour = np.asarray(Image.open(io.BytesIO(embedded(gltf, image.bufferView))))
    assert image.mimeType == "image/png" and colour.dtype == np.uint8 and colour.shape[2] == 3
    normal = decode_png16((relief_glb / "blob_normal.png").read_bytes())
    assert colour.shape[:2] == normal.shape[:2]  # one frame for both textures
    source = blob_rgba(128)
    offset = crop_offset(colour, source)
    assert offset is not None
    r, c = offset
    opaque = source[r:r + colour.shape[0], c:c + colour.shape[1], 3] > 0
    palette = {tuple(p) for p in colour[opaque]}
    assert all(tuple(p) in palette for p in colour[~opaque][::7])  # the background repeats object colours


def test_trimesh_reads_the_glb_as_textured_and_closed(relief_glb):
    scene = trimesh.load(relief_glb / "blob.glb")
    meshes = list(scene.geometry.values())
    assert all(m.visual.uv is not None and len(m.visual.uv) == len(m.vertices) for m in meshes)
    normal_texture = meshes[0].visual.material.normalTexture
    assert normal_texture is not None
    png = decode_png16((relief_glb / "blob_normal.png").read_bytes())
    assert normal_texture.size == (png.shape[1], png.shape[0])
    assert np.array_equal(np.asarray(normal_texture.convert("RGB")), (png >> 8).astype(np.uint8))  # Pillow: 8 bits
    whole = trimesh.load(relief_glb / "blob.glb", force="mesh", process=False)
    whole.merge_vertices(merge_tex=True, merge_norm=True)  # sharp edges and the two materials split vertices
    assert whole.is_watertight and whole.is_winding_consistent and whole.volume > 0


def test_the_obj_gets_its_mtl_and_png_and_loads_with_uvs(tmp_path):
    (tmp_path / "blob.png").write_bytes(png_bytes(blob_rgba(96)))
    out = tmp_path / "out"
    code, err = run_cli("generate", str(tmp_path / "blob.png"), "-o", str(out), "--format", "obj",
                        "--param", "resolution=48")
    assert code == 0, err
    assert names_in(out) == ["blob.mtl", "blob.obj", "blob_color.png", "blob_normal.png"]
    obj = (out / "blob.obj").read_text()
    assert "mtllib blob.mtl" in obj and "usemtl blob\n" in obj and "usemtl blob_plain\n" in obj
    mtl = (out / "blob.mtl").read_text().splitlines()
    assert "norm blob_normal.png" in mtl and "map_Bump -bm 1 blob_normal.png" in mtl and "map_Kd blob_color.png" in mtl
    scene = trimesh.load(out / "blob.obj")
    meshes = list(scene.geometry.values())
    assert len(meshes) == 2 and all(m.visual.uv is not None and len(m.visual.uv) == len(m.vertices) for m in meshes)
    png = decode_png16((out / "blob_normal.png").read_bytes())
    assert png.shape[2] == 3


def test_obj_names_are_made_safe_and_claimed(tmp_path):
    (tmp_path / "my blob.png").write_bytes(png_bytes(blob_rgba(64)))
    (tmp_path / "my_blob.png").write_bytes(png_bytes(blob_rgba(64)))
    out = tmp_path / "out"
    code, err = run_cli("generate", str(tmp_path / "my blob.png"), str(tmp_path / "my_blob.png"), "-o", str(out),
                        "--format", "obj", "--param", "resolution=32")
    assert code == 0, err
    assert names_in(out) == ["my_blob-2.mtl", "my_blob-2.obj", "my_blob-2_color.png", "my_blob-2_normal.png",
                             "my_blob.mtl", "my_blob.obj", "my_blob_color.png", "my_blob_normal.png"]
    assert "my blob.png is written as my_blob*" in err and "my_blob.png is written as my_blob-2*" in err
    assert "mtllib my_blob-2.mtl" in (out / "my_blob-2.obj").read_text()


def test_directx_flips_the_written_green_and_the_glb_stays_opengl(tmp_path):
    (tmp_path / "blob.png").write_bytes(png_bytes(blob_rgba(64)))
    for convention in ("opengl", "directx"):
        code, err = run_cli("generate", str(tmp_path / "blob.png"), "-o", str(tmp_path / convention),
                            "--convention", convention, "--param", "resolution=32")
        assert code == 0, err
    gl = decode_png16((tmp_path / "opengl" / "blob_normal.png").read_bytes()).astype(np.int64)
    dx = decode_png16((tmp_path / "directx" / "blob_normal.png").read_bytes()).astype(np.int64)
    assert np.array_equal(dx[..., [0, 2]], gl[..., [0, 2]]) and np.abs(dx[..., 1] - (65535 - gl[..., 1])).max() <= 1
    assert (tmp_path / "opengl" / "blob.glb").read_bytes() == (tmp_path / "directx" / "blob.glb").read_bytes()


# ------------------------------------------------------------------------------------------ the parts


def grid(n: int = 8, height=lambda x, z: 0.0 * x) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A front-facing height field over [0, 1]^2 (Blender frame: x right, z up, toward the camera at -Y),
    its faces wound counter-clockwise seen from -Y, UVs = the front projection."""
    z, x = np.mgrid[0:n + 1, 0:n + 1] / n
    x, z = x.ravel(), z.ravel()
    vertices = np.stack([x, -height(x, z), z], 1).astype(np.float32)
    i = np.arange(n * (n + 1)).reshape(n, n + 1)[:, :n].ravel()
    faces = np.concatenate([np.stack([i, i + 1, i + n + 2], 1), np.stack([i, i + n + 2, i + n + 1], 1)])
    return vertices, faces.astype(np.int32), np.stack([x, z], 1).astype(np.float32)


def test_a_cube_splits_at_every_edge_and_a_sphere_nowhere():
    box = trimesh.creation.box()
    cube = split_sharp_edges(box.vertices, box.faces)
    assert len(cube.vertices) == 24  # each corner once per side
    assert np.allclose(np.abs(cube.normals).max(axis=1), 1.0)  # axis-aligned: flat sides
    ball = trimesh.creation.icosphere(2)
    smooth = split_sharp_edges(ball.vertices, ball.faces)
    assert len(smooth.vertices) == len(ball.vertices)
    radial = smooth.vertices / np.linalg.norm(smooth.vertices, axis=1)[:, None]
    assert np.einsum("ij,ij->i", smooth.normals, radial).min() > 0.99
    assert np.array_equal(smooth.vertices[smooth.faces], np.asarray(ball.vertices, np.float32)[ball.faces])


def test_the_edge_between_textured_and_plain_faces_is_split_at_any_angle():
    """A relief's rim: the front (textured) meets a side wall (plain UVs) at whatever angle the surface has
    there; Auto Smooth's 30 degrees alone would join them where the front is steep and split them where it
    is not (dashes along the rim). With the UVs the rim is always a crease, as the add-on marks it."""
    bend = np.radians(10.0)
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 0, 1], [1, 0, 1], [2, np.sin(bend), 0.5]], np.float32)
    f = np.array([[0, 1, 3], [0, 3, 2], [1, 4, 3]], np.int32)  # two front faces, one 10 degrees off
    uv = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [1, 0.5]], np.float32)  # the third face: zero UV area
    assert textured_faces(f, uv).tolist() == [True, True, False]
    assert len(split_sharp_edges(v, f).vertices) == 5  # by angle alone: smooth
    split = split_sharp_edges(v, f, uv)
    assert len(split.vertices) == 7  # the shared edge's two vertices, once per side
    front = split.faces[:2].ravel()
    assert np.allclose(split.normals[front], [0.0, -1.0, 0.0], atol=1e-6)  # the front stays flat


def test_given_normals_are_kept():
    v, f, uv = grid(2)
    normals = np.tile([[0.0, -1.0, 0.0]], (len(v), 1))
    mesh = shaded_mesh(v, f, normals, uv)
    assert len(mesh.vertices) == len(v) and np.array_equal(mesh.normals, normals.astype(np.float32))


def test_textured_faces_are_the_counter_clockwise_uv_ones():
    v, f, uv = grid(2)
    flipped = f[:, ::-1]
    walls = np.array([[0, 1, 1]])  # zero UV area
    assert textured_faces(np.concatenate([f, flipped, walls]), uv).tolist() == [True] * 8 + [False] * 9


def test_on_a_flat_front_tangent_space_is_camera_space():
    v, f, uv = grid(4)
    rng = np.random.default_rng(0)
    camera = normalize(rng.normal(size=(16, 16, 3)) * (0.3, 0.3, 0) + (0, 0, 1)).astype(np.float32)
    mask = np.ones((16, 16), bool)
    mask[0, 0] = False
    mesh = shaded_mesh(v, f, uvs=uv)
    texture = tangent_space_texture(mesh, textured_faces(mesh.faces, mesh.uvs), camera, mask)
    assert np.allclose(texture[mask], camera[mask], atol=1e-5)  # T = +X (right), B = +Z (up), N = -Y (viewer)
    assert np.array_equal(texture[0, 0], [0.0, 0.0, 1.0])  # outside the mask: flat


def test_where_the_geometry_already_has_the_normal_the_texture_is_flat():
    def slope(x, z):
        return 0.4 * x + 0.2 * z  # toward the viewer: camera-space normal (-0.4, -0.2, 1)

    v, f, uv = grid(4, slope)
    camera = np.tile(normalize(np.array([-0.4, -0.2, 1.0], np.float32)), (12, 12, 1))
    mesh = shaded_mesh(v, f, uvs=uv)
    texture = tangent_space_texture(mesh, textured_faces(mesh.faces, mesh.uvs), camera, np.ones((12, 12), bool))
    assert np.allclose(texture, [0.0, 0.0, 1.0], atol=1e-5)
    world = camera_to_mesh_frame(camera[0, 0])
    assert np.allclose(world, mesh.normals[0], atol=1e-5)  # the grid's own normal is that normal


def test_a_texture_shades_back_to_the_camera_normal():
    """On a curved front the shading normal x T + y B + z N equals the camera-space map again."""
    v, f, uv = grid(24, lambda x, z: 0.3 * np.sin(3 * x) * np.cos(2 * z))
    rng = np.random.default_rng(1)
    camera = normalize(rng.normal(size=(48, 48, 3)) * (0.2, 0.2, 0) + (0, 0, 1)).astype(np.float32)
    mesh = shaded_mesh(v, f, uvs=uv)
    texture = tangent_space_texture(mesh, textured_faces(mesh.faces, mesh.uvs), camera, np.ones((48, 48), bool))
    r, c = 30, 17  # one texel; its surface frame, analytically (central differences of the height field)
    u, w = (c + 0.5) / 48, 1 - (r + 0.5) / 48
    eps = 1e-4
    h = lambda x, z: 0.3 * np.sin(3 * x) * np.cos(2 * z)  # noqa: E731
    p = lambda x, z: np.array([x, -h(x, z), z])  # noqa: E731
    t = (p(u + eps, w) - p(u - eps, w)) / (2 * eps)
    b = (p(u, w + eps) - p(u, w - eps)) / (2 * eps)
    n = np.cross(t, b)  # outward (toward -Y)
    n /= np.linalg.norm(n)
    t -= t.dot(n) * n
    t /= np.linalg.norm(t)
    b = np.cross(n, t)
    shading = texture[r, c] @ np.stack([t, b, n])
    assert np.degrees(np.arccos(np.clip(shading @ camera_to_mesh_frame(camera[r, c]), -1, 1))) < 2.0


def test_a_mesh_without_uvs_gets_normals_and_no_material(tmp_path):
    ball = trimesh.creation.icosphere(1)
    normals = np.asarray(ball.vertex_normals, np.float32)
    export_mesh(ball.vertices, ball.faces, tmp_path / "ball.glb", normals)
    gltf = pygltflib.GLTF2().load(str(tmp_path / "ball.glb"))
    (prim,) = gltf.meshes[0].primitives
    assert prim.attributes.NORMAL is not None and prim.attributes.TEXCOORD_0 is None
    assert prim.material is None and not gltf.materials and not gltf.images


def test_a_base_colour_image_makes_a_full_material(tmp_path):
    v, f, uv = grid(2)
    mesh = shaded_mesh(v, f, uvs=uv)
    normal_png, colour_png = png_bytes(np.full((4, 4, 3), (128, 128, 255), np.uint8)), png_bytes(blob_rgba(8)[..., :3])
    textures = MeshTextures(normal_png=normal_png, base_color_png=colour_png)
    export_mesh(mesh.vertices, mesh.faces, tmp_path / "x.glb", mesh.normals, uvs=uv, textures=textures)
    gltf = pygltflib.GLTF2().load(str(tmp_path / "x.glb"))
    (prim,) = gltf.meshes[0].primitives
    material = gltf.materials[prim.material]
    colour = gltf.textures[material.pbrMetallicRoughness.baseColorTexture.index].source
    assert embedded(gltf, gltf.images[colour].bufferView) == colour_png
    normal = gltf.textures[material.normalTexture.index].source
    assert embedded(gltf, gltf.images[normal].bufferView) == normal_png
    stored = gltf.accessors[prim.attributes.TEXCOORD_0]
    view = gltf.bufferViews[stored.bufferView]
    texcoord = np.frombuffer(gltf.binary_blob()[view.byteOffset:view.byteOffset + view.byteLength], "<f4")
    assert np.allclose(texcoord.reshape(-1, 2), uv * (1, -1) + (0, 1))  # glTF: origin top left, v down
    export_mesh(mesh.vertices, mesh.faces, tmp_path / "x.obj", mesh.normals, uvs=uv, textures=textures)
    assert names_in(tmp_path) == ["x.glb", "x.mtl", "x.obj", "x_color.png", "x_normal.png"]
    assert "map_Kd x_color.png" in (tmp_path / "x.mtl").read_text()
    assert Image.open(io.BytesIO((tmp_path / "x_color.png").read_bytes())).size == (8, 8)


def test_a_result_without_uvs_writes_the_predicted_map_and_a_plain_mesh(tmp_path):
    """The hi3dgen engine's case until its meshes are unwrapped: normals in the GLB, no material, and the
    camera-space map (RGBA, the mask as alpha) as the PNG."""
    from backend.engines.base import EngineResult, MeshData, NormalMapData
    from backend.result_files import write_result

    ball = trimesh.creation.icosphere(1)
    normals = np.asarray(ball.vertex_normals, np.float32)
    mask = np.zeros((8, 8), bool)
    mask[2:6, 2:6] = True
    camera = np.tile(np.array([0.0, 0.0, 1.0], np.float32), (8, 8, 1))
    result = EngineResult(meshes=[MeshData("ball", np.asarray(ball.vertices, np.float32),
                                           np.asarray(ball.faces, np.int32), normals)],
                          normal_map=NormalMapData(camera, mask))
    write_result(result, tmp_path, "ball", "glb", "opengl")
    assert names_in(tmp_path) == ["ball.glb", "ball_normal.png"]
    png = decode_png16((tmp_path / "ball_normal.png").read_bytes())
    assert png.shape == (8, 8, 4) and np.array_equal(png[..., 3] > 0, mask)
    gltf = pygltflib.GLTF2().load(str(tmp_path / "ball.glb"))
    (prim,) = gltf.meshes[0].primitives
    assert prim.attributes.NORMAL is not None and prim.attributes.TEXCOORD_0 is None and not gltf.materials


def test_an_obj_with_directx_names_the_directx_png(tmp_path):
    (tmp_path / "blob.png").write_bytes(png_bytes(blob_rgba(64)))
    for convention in ("opengl", "directx"):
        code, err = run_cli("generate", str(tmp_path / "blob.png"), "-o", str(tmp_path / convention),
                            "--format", "obj", "--convention", convention, "--param", "resolution=32")
        assert code == 0, err
    gl = decode_png16((tmp_path / "opengl" / "blob_normal.png").read_bytes()).astype(np.int64)
    dx = decode_png16((tmp_path / "directx" / "blob_normal.png").read_bytes()).astype(np.int64)
    assert np.abs(dx[..., 1] - (65535 - gl[..., 1])).max() <= 1 and names_in(tmp_path / "directx") == [
        "blob.mtl", "blob.obj", "blob_color.png", "blob_normal.png"]


def test_a_degenerate_uv_triangle_covers_no_texel_and_warns_nothing():
    import warnings

    from backend.mesh.normal_texture import covered_texels

    uvs = np.array([[0.1, 0.1], [0.9, 0.1], [0.1, 0.9], [0.5, 0.5], [0.5, 0.5]], np.float32)
    faces = np.array([[0, 1, 2], [3, 4, 3], [0, 1, 0]], np.int32)  # one real triangle, two with no area
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        face, row, col, bary = covered_texels(uvs, faces, (32, 32))
    assert len(face) > 100 and set(face.tolist()) == {0}
    assert np.isfinite(bary).all() and np.allclose(bary.sum(axis=1), 1.0)
