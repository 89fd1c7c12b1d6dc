"""A Wavefront OBJ writer with its MTL and texture files next to it.

``<name>.obj`` references ``<safe>.mtl``, which references ``<safe>_normal.png`` (and ``<safe>_color.png``),
where ``<safe>`` is the OBJ's stem with every character other than letters, digits, ``-``, ``_`` and ``.``
replaced by ``_`` (OBJ and MTL names end at the first space, and some readers stop at non-ASCII).
The textures and the MTL are written before the OBJ, each atomically, so the OBJ never points at a file
that is not there yet.

The MTL's textured material carries the normal map both as ``norm`` (the PBR extension's tangent-space
normal map) and as ``map_Bump`` (what Blender's and most other importers read as the normal map). Faces
without the texture (a relief's back and walls) use a second, plain material.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import write_atomic, write_bytes_atomic

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass
class ObjMesh:
    """What goes into the file (any frame; the caller picks it)."""

    name: str
    vertices: np.ndarray  # [V, 3] float32
    normals: np.ndarray | None  # [V, 3]
    uvs: np.ndarray | None  # [V, 2], v up (OBJ's convention too)
    primitives: list[tuple[np.ndarray, bool]]  # (faces [F, 3], takes the textures)
    normal_png: bytes | None = None
    base_color_png: bytes | None = None


def safe_stem(stem: str) -> str:
    """``stem`` with every character an OBJ or MTL reference cannot hold replaced by ``_``."""
    return _UNSAFE.sub("_", stem) or "mesh"


def sidecar_names(path: Path) -> dict[str, str]:
    """File names (same folder) of the OBJ's MTL and textures: {'mtl': ..., 'normal': ..., 'color': ...}."""
    safe = safe_stem(path.stem)
    return {"mtl": f"{safe}.mtl", "normal": f"{safe}_normal.png", "color": f"{safe}_color.png"}


def write_obj(mesh: ObjMesh, path: Path, write_normal_png: bool = True) -> Path:
    """Write the textures (when the mesh has UVs), the MTL and then the OBJ; returns ``path``.

    ``write_normal_png=False`` when the caller has written ``sidecar_names(path)['normal']`` itself.
    """
    names = sidecar_names(path)
    textured = mesh.uvs is not None and (mesh.normal_png is not None or mesh.base_color_png is not None)
    material = safe_stem(mesh.name)
    if textured:
        if mesh.normal_png is not None and write_normal_png:
            write_bytes_atomic(path.with_name(names["normal"]), mesh.normal_png)
        if mesh.base_color_png is not None:
            write_bytes_atomic(path.with_name(names["color"]), mesh.base_color_png)
        write_bytes_atomic(path.with_name(names["mtl"]), _mtl(mesh, material, names).encode("ascii"))
    return write_atomic(path, lambda temp: _write_body(mesh, temp, names["mtl"] if textured else None, material))


def _mtl(mesh: ObjMesh, material: str, names: dict[str, str]) -> str:
    lines = ["# written by hi3dgen-backend", f"newmtl {material}", "Kd 0.8 0.8 0.8", "Ka 0 0 0",
             "Ks 0.2 0.2 0.2", "Ns 100", "illum 2"]
    if mesh.base_color_png is not None:
        lines[2] = "Kd 1 1 1"
        lines.append(f"map_Kd {names['color']}")
    if mesh.normal_png is not None:
        lines += [f"norm {names['normal']}", f"map_Bump -bm 1 {names['normal']}"]
    lines += ["", f"newmtl {material}_plain", "Kd 0.8 0.8 0.8", "Ka 0 0 0", "Ks 0.2 0.2 0.2", "Ns 100",
              "illum 2", ""]
    return "\n".join(lines)


def _write_body(mesh: ObjMesh, temp: Path, mtl: str | None, material: str) -> None:
    with open(temp, "w", encoding="ascii", newline="\n") as out:
        out.write("# written by hi3dgen-backend\n")
        if mtl is not None:
            out.write(f"mtllib {mtl}\n")
        out.write(f"o {material}\n")
        _rows(out, "v", mesh.vertices, "%.6f")
        if mesh.uvs is not None:
            _rows(out, "vt", mesh.uvs, "%.6f")
        if mesh.normals is not None:
            _rows(out, "vn", mesh.normals, "%.5f")
        for faces, takes_textures in mesh.primitives:
            if not len(faces):
                continue
            if mtl is not None:
                out.write(f"usemtl {material if takes_textures else material + '_plain'}\n")
            out.write(_faces(np.asarray(faces, np.int64) + 1, mesh.uvs is not None, mesh.normals is not None))


def _rows(out, tag: str, values: np.ndarray, fmt: str) -> None:  # noqa: ANN001 - a text file
    values = np.asarray(values, np.float64)
    line = f"{tag} " + " ".join([fmt] * values.shape[1]) + "\n"
    out.write((line * len(values)) % tuple(values.ravel()))


def _faces(faces: np.ndarray, uv: bool, normal: bool) -> str:
    """``f`` lines with 1-based indices: v, v/vt, v//vn or v/vt/vn (the same index for each)."""
    corner = "%d/%d/%d" if uv and normal else "%d/%d" if uv else "%d//%d" if normal else "%d"
    repeat = 1 + uv + normal
    line = "f " + " ".join([corner] * 3) + "\n"
    return (line * len(faces)) % tuple(np.repeat(faces.ravel(), repeat))
