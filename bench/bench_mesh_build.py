"""Mesh building: the add-on's native builder against Blender's glTF importer, same mesh, one process.

Run with the Blender venv: ``.venv-blender/bin/python bench/bench_mesh_build.py [--faces 1300000]``.
The mesh is a sphere made of a latitude/longitude grid (closed except at the poles, per-vertex UVs and
normals). The GLB is written by a small writer below (positions, normals, UVs, uint32 indices), so both
paths start from the same arrays; the glTF time includes reading the file, as the other add-ons do.

The native builder runs twice per shading: with Blender computing the edges (``calc_edges``) and with the
corner edges the backend sends (``backend/mesh/edges.py``; the add-on rebuilds the edge rows from them and
checks both). What they cost before Blender sees them is measured apart and added for the whole-path
ratio: ``mesh_edges`` in the backend's own interpreter (``--backend-python``, a subprocess on the same mesh;
also in this one, without Numba and SciPy there), and the extra array through the protocol (frames, CRC32
both ways, reassembly; in memory, no pipe: the difference between the mesh sent with and without it).
The backend's time is given twice (``edge_seconds``, three fresh processes): steady, as a backend that has
served a few meshes has it (the best), and cold, a fresh backend's (page faults on new memory; the
median). Last, two per-face writes, slow path against the builder's: material slots
(``polygons.foreach_set`` vs the ``material_index`` attribute) and face offsets (from a numpy array vs from
a memoryview of it).
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
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


def interleaved(fns: list, repeats: int) -> list[float]:  # noqa: ANN001 - no-argument callables
    """Best time of each, the functions taking turns (a busy machine's load then weighs on all alike)."""
    times = [[best_of(fn, 1) for fn in fns] for _ in range(repeats)]
    return [min(column) for column in zip(*times)]


def edge_seconds(faces: int, repeats: int) -> tuple[float, float]:
    """``mesh_edges`` on the bench mesh in this interpreter: (cold, steady) wall seconds. Cold: the call
    after the first (which loads the compiled pass, ``edges_kernel``), while its 80 MB of arrays still
    come fresh from the system (page faults); steady: the best of ``repeats`` calls after four, when the
    allocator hands back memory an earlier mesh used, as in a backend that has served a few."""
    from backend.mesh.edges import mesh_edges

    _, tris, _, _ = uv_sphere(faces)
    count = int(tris.max()) + 1
    times = []
    for _ in range(5 + repeats):
        start = time.perf_counter()
        mesh_edges(tris, count)
        times.append(time.perf_counter() - start)
    return times[1], min(times[5:])


def backend_edge_seconds(python: str, faces: int, repeats: int, processes: int = 3) -> tuple[float, float] | None:
    """``edge_seconds`` in the backend's interpreter, in ``processes`` fresh ones: (median cold, best steady);
    None if it cannot run."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from bench.bench_mesh_build import edge_seconds; "
            "print(*edge_seconds(int(sys.argv[2]), int(sys.argv[3])))")
    colds, steadies = [], []
    try:
        for _ in range(processes):
            out = subprocess.run([python, "-c", code, str(REPO), str(faces), str(repeats)], capture_output=True,
                                 text=True, timeout=600, check=True)
            cold, steady = out.stdout.split()[-2:]
            colds.append(float(cold))
            steadies.append(float(steady))
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return float(np.median(colds)), min(steadies)


def wire_trip(arrays: dict[str, np.ndarray]) -> Callable[[], None]:
    """One mesh through the protocol in memory (no pipe): frames, CRC32 both ways, decoding, reassembly."""
    import io

    from backend import protocol as P

    def send_and_receive() -> None:
        stream = io.BytesIO()
        writer = P.FrameWriter(stream)
        for frame in P.mesh_frames(0, "m", arrays):
            writer.send(frame)
        stream.seek(0)
        reader = P.FrameReader(stream)
        first = reader.read()
        assert first is not None and isinstance(first[0], P.MeshStart)
        assembly = P.MeshAssembly(first[0])
        while (item := reader.read()) is not None:
            assert isinstance(item[0], P.MeshChunk)
            assembly.add(item[0])
        assembly.finish()

    return send_and_receive


def slots_and_offsets(verts: np.ndarray, faces: np.ndarray, repeats: int) -> None:
    """Two per-face writes through their slow and fast paths, same mesh, taking turns: each face's material
    slot (a textured result's plain faces) through ``polygons.foreach_set`` against the ``material_index``
    attribute (what the builder does), and the face offsets from a numpy array against from a memoryview of
    it (the builder's; Blender has no raw path for them)."""
    import bpy

    from blender_addon.mesh_builder import build_mesh

    mesh = build_mesh("slots", verts, faces, "SMOOTH")
    index = (np.arange(len(mesh.polygons)) % 2).astype(np.int32)  # [F]
    starts = np.arange(0, 3 * len(mesh.polygons), 3, dtype=np.int32)  # [F]

    def attribute() -> None:
        layer = mesh.attributes.get("material_index") or mesh.attributes.new("material_index", "INT", "FACE")
        layer.data.foreach_set("value", index)

    t_rna, t_attr, t_numpy, t_view = interleaved([
        lambda: mesh.polygons.foreach_set("material_index", index), attribute,
        lambda: mesh.polygons.foreach_set("loop_start", starts),
        lambda: mesh.polygons.foreach_set("loop_start", starts.data)], repeats)
    bpy.data.meshes.remove(mesh)
    print(f"material slots per face: polygons.foreach_set {t_rna:.3f} s, the attribute {t_attr:.4f} s "
          f"({t_rna / max(t_attr, 1e-9):.0f}x); face offsets: from numpy {t_numpy:.3f} s, from a memoryview "
          f"{t_view:.3f} s ({t_numpy / max(t_view, 1e-9):.1f}x)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--faces", type=int, default=1_300_000)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--backend-python", default=str(REPO / ".venv" / "bin" / "python"))
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    import bpy

    from backend.mesh.edges import mesh_edges
    from blender_addon.mesh_builder import build_mesh_and_plain, set_material_index

    verts, faces, normals, uvs = uv_sphere(args.faces)
    print(f"mesh: {len(verts):,} vertices, {len(faces):,} triangles; best of {args.repeats}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    edges, corner_edge = mesh_edges(faces, len(verts))
    t_backend = backend_edge_seconds(args.backend_python, args.faces, args.repeats)
    t_here = edge_seconds(args.faces, args.repeats)
    mesh = {"vertices": verts, "faces": faces, "normals": normals, "uvs": uvs}
    t_plain_wire, t_full_wire = interleaved([wire_trip(mesh), wire_trip({**mesh, "corner_edge": corner_edge})],
                                            args.repeats)
    t_wire = max(0.0, t_full_wire - t_plain_wire)
    (cold_edges, t_edges) = t_backend if t_backend is not None else t_here
    where = "backend's interpreter" if t_backend is not None else "this interpreter (backend's not found)"
    print(f"backend edges (mesh_edges, {len(edges):,} edges): {t_edges:.3f} s steady, {cold_edges:.3f} s cold "
          f"(the median of 3 fresh processes), "
          f"in the {where}; {t_here[1]:.3f} s here; corner_edge on the wire: +{t_wire:.3f} s "
          f"(the mesh without it: {t_plain_wire:.3f} s)")
    folder = tempfile.mkdtemp(prefix="hi3dgen_bench_")
    plain_glb, full_glb = os.path.join(folder, "plain.glb"), os.path.join(folder, "full.glb")
    uv_glb = os.path.join(folder, "uvs.glb")
    write_glb(plain_glb, verts, faces)
    write_glb(uv_glb, verts, faces, uvs=uvs)
    write_glb(full_glb, verts, faces, normals, uvs)
    bpy.ops.wm.read_factory_settings(use_empty=True)

    def native(shading: str, with_extras: bool | str, given: bool = False) -> None:
        """``with_extras``: True adds normals and UVs, "uvs" UVs and the textured result's material slots."""
        mesh, plain = build_mesh_and_plain("bench", verts, faces, shading, normals if with_extras is True else None,
                                           uvs if with_extras else None, corner_edge if given else None)
        if with_extras == "uvs":  # what add_result adds for a textured result: the plain faces' slot
            set_material_index(mesh, plain.astype(np.int32))
        bpy.data.meshes.remove(mesh)

    def gltf(path: str) -> None:
        bpy.ops.import_scene.gltf(filepath=path)
        for obj in list(bpy.context.scene.objects):
            mesh = obj.data
            bpy.data.objects.remove(obj)
            bpy.data.meshes.remove(mesh)

    cases = [("positions + faces (auto smooth, default)", "AUTO", False, plain_glb),
             ("positions + faces (smooth)", "SMOOTH", False, plain_glb),
             ("+ UVs, material slots (auto smooth)", "AUTO", "uvs", uv_glb),
             ("+ normals + UVs (custom normals)", "NORMALS", True, full_glb)]
    print(f"{'data':42s} {'calc s':>7s} {'given s':>8s} {'glTF s':>7s} {'calc':>6s} {'given':>6s} {'whole':>6s} "
          f"{'cold':>6s}")
    for name, shading, extras, glb in cases:
        t_calc, t_given, t_gltf = interleaved([partial(native, shading, extras), partial(native, shading, extras, True),
                                               partial(gltf, glb)], args.repeats)
        whole, whole_cold = t_given + t_edges + t_wire, t_given + cold_edges + t_wire
        print(f"{name:42s} {t_calc:7.3f} {t_given:8.3f} {t_gltf:7.3f} {t_gltf / t_calc:5.1f}x "
              f"{t_gltf / t_given:5.1f}x {t_gltf / whole:5.1f}x {t_gltf / whole_cold:5.1f}x")
    print("calc: Blender computes the edges; given: the backend's corner edges, edges rebuilt and checked; "
          "whole: given + the backend's edges (steady) + wire; cold: the same with the edges' cold time (a fresh "
          "backend's first meshes)")
    slots_and_offsets(verts, faces, args.repeats)
    for path in (plain_glb, uv_glb, full_glb):
        os.remove(path)
    os.rmdir(folder)


if __name__ == "__main__":
    main()
