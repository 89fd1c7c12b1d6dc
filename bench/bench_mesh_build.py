"""Mesh building: the add-on's native builder against Blender's glTF importer, same mesh, one process.

Run with the Blender venv: ``.venv-blender/bin/python bench/bench_mesh_build.py [--faces 1300000]``.
The mesh is a sphere made of a latitude/longitude grid (closed except at the poles, per-vertex UVs and
normals). The GLB is written by a small writer below (positions, normals, UVs, uint32 indices), so both
paths start from the same arrays; the glTF time includes reading the file, as the other add-ons do.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def uv_sphere(faces: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A UV sphere with about ``faces`` triangles: vertices, faces, normals, uvs."""
    rings = max(3, int(round(np.sqrt(faces / 4))))  # faces = 2 * rings * (2 * rings)
    segments = 2 * rings
    theta = np.linspace(0.0, np.pi, rings + 1, dtype=np.float64)  # [R+1]
    phi = np.linspace(0.0, 2 * np.pi, segments + 1, dtype=np.float64)  # [S+1], seam duplicated for UVs
    t, p = np.meshgrid(theta, phi, indexing="ij")  # [R+1, S+1]
    normals = np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], -1).reshape(-1, 3)
    verts = (0.5 * normals).astype(np.float32)  # [V, 3]
    uvs = np.stack([p / (2 * np.pi), 1.0 - t / np.pi], -1).reshape(-1, 2).astype(np.float32)  # [V, 2]
    idx = np.arange((rings + 1) * (segments + 1), dtype=np.int32).reshape(rings + 1, segments + 1)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    tris = np.concatenate([np.stack([a, c, d], -1).reshape(-1, 3), np.stack([a, d, b], -1).reshape(-1, 3)])
    return verts, tris.astype(np.int32), normals.astype(np.float32), uvs


def write_glb(path: str, verts: np.ndarray, faces: np.ndarray, normals: np.ndarray | None = None,
              uvs: np.ndarray | None = None) -> None:
    """A minimal glTF 2.0 binary with one triangle mesh (own writer, spec section 'GLB File Format')."""
    blobs: list[np.ndarray] = [np.ascontiguousarray(verts, np.float32)]
    attributes = {"POSITION": 0}
    types = [("VEC3", 5126, 34962)]
    if normals is not None:
        attributes["NORMAL"] = len(blobs)
        blobs.append(np.ascontiguousarray(normals, np.float32))
        types.append(("VEC3", 5126, 34962))
    if uvs is not None:
        attributes["TEXCOORD_0"] = len(blobs)
        blobs.append(np.ascontiguousarray(np.stack([uvs[:, 0], 1.0 - uvs[:, 1]], -1), np.float32))  # v down
        types.append(("VEC2", 5126, 34962))
    blobs.append(faces.astype(np.uint32).ravel())
    types.append(("SCALAR", 5125, 34963))
    views, accessors, offset = [], [], 0
    for blob, (kind, comp, target) in zip(blobs, types):
        views.append({"buffer": 0, "byteOffset": offset, "byteLength": blob.nbytes, "target": target})
        acc = {"bufferView": len(views) - 1, "componentType": comp, "count": len(blob), "type": kind}
        if len(accessors) == 0:
            acc.update(min=verts.min(0).tolist(), max=verts.max(0).tolist())
        accessors.append(acc)
        offset += blob.nbytes  # every blob is a multiple of 4 bytes
    doc = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
           "meshes": [{"primitives": [{"attributes": attributes, "indices": len(blobs) - 1}]}],
           "buffers": [{"byteLength": offset}], "bufferViews": views, "accessors": accessors}
    text = json.dumps(doc).encode("utf-8")
    text += b" " * (-len(text) % 4)
    with open(path, "wb") as f:
        f.write(struct.pack("<III", 0x46546C67, 2, 12 + 8 + len(text) + 8 + offset))
        f.write(struct.pack("<II", len(text), 0x4E4F534A) + text)
        f.write(struct.pack("<II", offset, 0x004E4942))
        for blob in blobs:
            f.write(blob.tobytes())


def best_of(fn, repeats: int) -> float:  # noqa: ANN001 - a no-argument callable
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--faces", type=int, default=1_300_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    import bpy

    from blender_addon.mesh_builder import build_mesh

    verts, faces, normals, uvs = uv_sphere(args.faces)
    print(f"mesh: {len(verts):,} vertices, {len(faces):,} triangles; best of {args.repeats}")
    folder = tempfile.mkdtemp(prefix="hi3dgen_bench_")
    plain_glb, full_glb = os.path.join(folder, "plain.glb"), os.path.join(folder, "full.glb")
    write_glb(plain_glb, verts, faces)
    write_glb(full_glb, verts, faces, normals, uvs)
    bpy.ops.wm.read_factory_settings(use_empty=True)

    def native(shading: str, with_extras: bool) -> None:
        mesh = build_mesh("bench", verts, faces, shading, normals if with_extras else None,
                          uvs if with_extras else None)
        bpy.data.meshes.remove(mesh)

    def gltf(path: str) -> None:
        bpy.ops.import_scene.gltf(filepath=path)
        for obj in list(bpy.context.scene.objects):
            mesh = obj.data
            bpy.data.objects.remove(obj)
            bpy.data.meshes.remove(mesh)

    cases = [("positions + faces (smooth)", lambda: native("SMOOTH", False), lambda: gltf(plain_glb)),
             ("positions + faces (auto smooth, default)", lambda: native("AUTO", False), lambda: gltf(plain_glb)),
             ("+ normals + UVs (custom normals)", lambda: native("NORMALS", True), lambda: gltf(full_glb))]
    print(f"{'data':42s} {'native s':>9s} {'glTF s':>8s} {'speed-up':>9s}")
    for name, fast, slow in cases:
        t_native, t_gltf = best_of(fast, args.repeats), best_of(slow, args.repeats)
        print(f"{name:42s} {t_native:9.3f} {t_gltf:8.3f} {t_gltf / t_native:8.1f}x")
    for path in (plain_glb, full_glb):
        os.remove(path)
    os.rmdir(folder)


if __name__ == "__main__":
    main()
