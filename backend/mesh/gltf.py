"""A binary glTF 2.0 (GLB) writer for one mesh: positions, normals, UVs and a PBR material whose
``normalTexture`` (and optionally ``baseColorTexture``) is embedded as PNG.

Written by hand (json + numpy, about a hundred lines) rather than through trimesh: the PNG bytes go in
unchanged (16-bit stays 16-bit; trimesh re-encodes images through Pillow at 8 bits), and the two primitives
(textured faces, plain faces) share one set of vertex accessors. The arrays come in the glTF frame already;
UVs come v-up (Blender's convention) and are stored as glTF's (u, 1 - v), origin at the image's top left.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

import numpy as np

FLOAT, UINT32 = 5126, 5125
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
LINEAR, LINEAR_MIPMAP_LINEAR, CLAMP_TO_EDGE = 9729, 9987, 33071
TRIANGLES = 4
GLB_MAGIC, JSON_CHUNK, BIN_CHUNK = 0x46546C67, 0x4E4F534A, 0x004E4942
BASE_COLOR = (0.8, 0.8, 0.8, 1.0)
ROUGHNESS = 0.6


@dataclass
class GltfMesh:
    """What goes into the file (glTF frame, +Y up)."""

    name: str
    vertices: np.ndarray  # [V, 3] float32
    normals: np.ndarray | None  # [V, 3] float32
    uvs: np.ndarray | None  # [V, 2] float32, v up
    primitives: list[tuple[np.ndarray, bool]]  # (faces [F, 3], takes the textures)
    normal_png: bytes | None = None
    base_color_png: bytes | None = None
    generator: str = "hi3dgen-backend"


class _Builder:
    def __init__(self) -> None:
        self.blob = bytearray()
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def view(self, data: bytes, target: int | None = None) -> int:
        self.blob.extend(b"\0" * (-len(self.blob) % 4))  # every view starts 4-byte aligned
        view = {"buffer": 0, "byteOffset": len(self.blob), "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        self.blob.extend(data)
        self.views.append(view)
        return len(self.views) - 1

    def accessor(self, array: np.ndarray, kind: str, target: int, bounds: bool = False) -> int:
        component = UINT32 if array.dtype == np.uint32 else FLOAT
        acc = {"bufferView": self.view(np.ascontiguousarray(array).astype("<" + array.dtype.str[1:]).tobytes(),
                                       target),
               "componentType": component, "count": int(len(array)), "type": kind}
        if bounds:  # POSITION must carry its bounds
            acc["min"] = [float(x) for x in array.min(axis=0)]
            acc["max"] = [float(x) for x in array.max(axis=0)]
        self.accessors.append(acc)
        return len(self.accessors) - 1


def glb_bytes(mesh: GltfMesh) -> bytes:
    """The whole .glb file."""
    build = _Builder()
    attributes = {"POSITION": build.accessor(np.asarray(mesh.vertices, np.float32), "VEC3", ARRAY_BUFFER, True)}
    if mesh.normals is not None:
        attributes["NORMAL"] = build.accessor(np.asarray(mesh.normals, np.float32), "VEC3", ARRAY_BUFFER)
    if mesh.uvs is not None:
        uv = np.asarray(mesh.uvs, np.float32) * (1.0, -1.0) + (0.0, 1.0)  # v up -> glTF's v down
        attributes["TEXCOORD_0"] = build.accessor(uv.astype(np.float32), "VEC2", ARRAY_BUFFER)
    doc: dict = {"asset": {"version": "2.0", "generator": mesh.generator}, "scene": 0,
                 "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0, "name": mesh.name}]}
    materials = _materials(mesh, build, doc)
    primitives = []
    for faces, textured in mesh.primitives:
        if not len(faces):
            continue
        prim = {"attributes": attributes, "mode": TRIANGLES,
                "indices": build.accessor(np.asarray(faces, np.uint32).ravel(), "SCALAR", ELEMENT_ARRAY_BUFFER)}
        if materials:
            prim["material"] = materials[0] if textured or len(materials) == 1 else materials[1]
        primitives.append(prim)
    doc["meshes"] = [{"name": mesh.name, "primitives": primitives}]
    doc.update(accessors=build.accessors, bufferViews=build.views, buffers=[{"byteLength": len(build.blob)}])
    return _container(json.dumps(doc, separators=(",", ":")).encode("utf-8"), bytes(build.blob))


def _materials(mesh: GltfMesh, build: _Builder, doc: dict) -> list[int]:
    """Material indices: [textured, plain] when there are textures, else []."""
    if mesh.uvs is None or (mesh.normal_png is None and mesh.base_color_png is None):
        return []
    images, textures = [], []
    for png, label in ((mesh.normal_png, "normal"), (mesh.base_color_png, "base_color")):
        if png is not None:
            images.append({"bufferView": build.view(png), "mimeType": "image/png", "name": f"{mesh.name}_{label}"})
            textures.append({"sampler": 0, "source": len(images) - 1})
    pbr: dict = {"baseColorFactor": list(BASE_COLOR), "metallicFactor": 0.0, "roughnessFactor": ROUGHNESS}
    textured: dict = {"name": mesh.name, "pbrMetallicRoughness": dict(pbr)}
    index = 0
    if mesh.normal_png is not None:
        textured["normalTexture"] = {"index": index, "texCoord": 0}
        index += 1
    if mesh.base_color_png is not None:
        textured["pbrMetallicRoughness"] = {**pbr, "baseColorFactor": [1.0, 1.0, 1.0, 1.0],
                                            "baseColorTexture": {"index": index, "texCoord": 0}}
    plain = {"name": f"{mesh.name}_plain", "pbrMetallicRoughness": dict(pbr)}
    doc.update(images=images, textures=textures, materials=[textured, plain],
               samplers=[{"magFilter": LINEAR, "minFilter": LINEAR_MIPMAP_LINEAR,
                          "wrapS": CLAMP_TO_EDGE, "wrapT": CLAMP_TO_EDGE}])
    return [0, 1]


def _container(json_chunk: bytes, bin_chunk: bytes) -> bytes:
    json_chunk += b" " * (-len(json_chunk) % 4)  # the JSON chunk pads with spaces, the binary one with zeros
    bin_chunk += b"\0" * (-len(bin_chunk) % 4)
    total = 12 + 8 + len(json_chunk) + 8 + len(bin_chunk)
    return b"".join([struct.pack("<III", GLB_MAGIC, 2, total),
                     struct.pack("<II", len(json_chunk), JSON_CHUNK), json_chunk,
                     struct.pack("<II", len(bin_chunk), BIN_CHUNK), bin_chunk])
