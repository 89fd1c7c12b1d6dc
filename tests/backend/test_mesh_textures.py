"""The add-on's material images on the wire: a UV-mapped mesh's tangent-space normal texture and base colour
come in ``MeshTexture`` frames, the very images the CLI's mesh files embed; the camera-space prediction
still comes as the ``NormalMap`` frame."""

from __future__ import annotations

import io

import numpy as np
import pygltflib
from PIL import Image

from backend import protocol as P
from backend.normalmap import decode_png16

from .conftest import blob_rgba, png_bytes
from .test_cli import run_cli


def _generate(backend, rid: int, image: bytes, **fields) -> dict:  # noqa: ANN001 - conftest's BackendProcess
    backend.send(P.Generate(image_name="blob.png", params={"resolution": 48},
                            image_bytes=np.frombuffer(image, np.uint8), **fields), rid)
    out = backend.collect(rid)
    assert out["error"] is None, out["error"]
    return out


def test_a_relief_mesh_gets_its_textures_and_they_are_the_files_textures(backend, tmp_path):
    image = png_bytes(blob_rgba(96))
    out = _generate(backend, 41, image)
    normal, colour = out["textures"]
    camera = out["normal_map"]
    assert (normal.mesh_index, normal.role, colour.mesh_index, colour.role) == (0, "normal", 0, "base_color")
    assert normal.pixels.dtype == np.uint16 and colour.pixels.dtype == np.uint8
    assert normal.pixels.shape == colour.pixels.shape == camera.pixels.shape == (camera.height, camera.width, 4)
    mask = camera.pixels[..., 3] > 32767
    assert np.array_equal(normal.pixels[..., 3] > 32767, mask) and np.array_equal(colour.pixels[..., 3] > 127, mask)
    tilt = np.abs(normal.pixels[..., :3].astype(np.int64) - camera.pixels[..., :3])[mask].mean()
    assert tilt > 1000  # the front's own tilt is taken out: not the camera-space map

    (tmp_path / "blob.png").write_bytes(image)
    code, err = run_cli("generate", str(tmp_path / "blob.png"), "-o", str(tmp_path / "out"),
                        "--param", "resolution=48")
    assert code == 0, err
    written = decode_png16((tmp_path / "out" / "blob_normal.png").read_bytes())
    assert np.array_equal(normal.pixels[..., :3], written)
    gltf = pygltflib.GLTF2().load(str(tmp_path / "out" / "blob.glb"))
    texture = gltf.materials[0].pbrMetallicRoughness.baseColorTexture
    view = gltf.bufferViews[gltf.images[gltf.textures[texture.index].source].bufferView]
    png = gltf.binary_blob()[view.byteOffset:view.byteOffset + view.byteLength]
    assert np.array_equal(colour.pixels[..., :3], np.asarray(Image.open(io.BytesIO(png))))


def test_textures_only_when_asked_and_the_prediction_independently(backend):
    image = png_bytes(blob_rgba(64))
    neither = _generate(backend, 42, image, want_textures=False, want_normal_map=False)
    assert neither["textures"] == [] and neither["normal_map"] is None and len(neither["meshes"]) == 1
    textures_only = _generate(backend, 43, image, want_normal_map=False)
    assert [t.role for t in textures_only["textures"]] == ["normal", "base_color"]
    assert textures_only["normal_map"] is None
