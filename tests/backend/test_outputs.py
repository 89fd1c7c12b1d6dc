"""Outputs are written safely: atomic files, one clear line for an unusable output folder, no overwrites."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from backend.atomic import prepare_folder, write_atomic, write_bytes_atomic
from backend.batch import OutputNames
from backend.errors import WriteFailed
from backend.mesh.export import export_mesh

from .conftest import blob_rgba, png_bytes
from .test_cli import run_cli


def names_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def half_then_fail(error: BaseException):
    def write(temp: Path) -> None:
        temp.write_bytes(b"half a file")
        raise error
    return write


@pytest.mark.parametrize("error", [RuntimeError("encoder crashed"), KeyboardInterrupt()])
def test_a_writer_that_fails_midway_leaves_nothing(tmp_path, error):
    with pytest.raises(type(error)):
        write_atomic(tmp_path / "x.glb", half_then_fail(error))
    assert names_in(tmp_path) == []


def test_a_full_disk_keeps_the_old_file_and_says_so(tmp_path):
    target = tmp_path / "x_normal.png"
    target.write_bytes(b"the previous result")
    with pytest.raises(WriteFailed, match="disk is full") as info:
        write_atomic(target, half_then_fail(OSError(errno.ENOSPC, "No space left on device")))
    assert str(target) in info.value.message and info.value.hint
    assert target.read_bytes() == b"the previous result" and names_in(tmp_path) == ["x_normal.png"]
    write_bytes_atomic(target, b"new")
    assert target.read_bytes() == b"new" and names_in(tmp_path) == ["x_normal.png"]


def test_mesh_export_is_atomic(tmp_path, monkeypatch):
    box = trimesh.creation.box()
    path = export_mesh(box.vertices, box.faces, tmp_path / "box.glb")
    assert names_in(tmp_path) == ["box.glb"] and path == tmp_path / "box.glb"

    def broken(self, file_obj, file_type=None, **kw):
        Path(file_obj).write_bytes(b"ply partial")
        raise ValueError("exporter failed")

    monkeypatch.setattr(trimesh.Trimesh, "export", broken)
    with pytest.raises(ValueError):
        export_mesh(box.vertices, box.faces, tmp_path / "other.ply")
    assert names_in(tmp_path) == ["box.glb"]

    def half_obj(mesh, temp, mtl, material):
        temp.write_text("v 0 0 0\n")
        raise ValueError("writer failed")

    monkeypatch.setattr("backend.mesh.obj._write_body", half_obj)
    with pytest.raises(ValueError):
        export_mesh(box.vertices, box.faces, tmp_path / "other.obj")
    assert names_in(tmp_path) == ["box.glb"]


def test_an_unusable_output_folder_is_one_clear_error(tmp_path):
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    with pytest.raises(WriteFailed, match="is a file, not a folder"):
        prepare_folder(a_file)
    with pytest.raises(WriteFailed, match="Cannot write"):
        prepare_folder(a_file / "below")
    assert prepare_folder(tmp_path / "new" / "deep").is_dir() and names_in(tmp_path / "new" / "deep") == []


def test_output_names_never_collide():
    names = OutputNames()
    assert names.claim("x", ["_normal.png", ".glb", "_1.glb"]) == "x"
    assert names.claim("x", ["_normal.png", ".glb"]) == "x-2"
    assert names.claim("X", [".glb"]) == "X-3"  # one file on a case-insensitive disk
    assert names.claim("x_1", [".glb"]) == "x_1-2"  # x's second mesh is x_1.glb
    assert names.claim("y", [".glb"]) == "y"


@pytest.mark.parametrize("output", ["file", "below_a_file"])
def test_cli_output_that_is_not_a_folder(tmp_path, output):
    image, taken = tmp_path / "blob.png", tmp_path / "taken"
    image.write_bytes(png_bytes(blob_rgba(64)))
    taken.write_text("keep me")
    target = taken if output == "file" else taken / "out"
    code, err = run_cli("generate", str(image), "-o", str(target), "--param", "resolution=32")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(target) in lines[0], err
    assert "Traceback" not in err and taken.read_text() == "keep me"


def test_cli_same_stems_get_their_own_files(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    inputs = [tmp_path / "a" / "x.png", tmp_path / "b" / "x.png", tmp_path / "x.jpg"]
    for n, path in enumerate(inputs):
        rgba = blob_rgba(64)
        rgba[..., 0] = 80 * n  # three different pictures
        flat = np.where(rgba[..., 3:] > 0, rgba[..., :3], 255).astype(np.uint8)  # JPEG: the blob on white
        Image.fromarray(rgba if path.suffix == ".png" else flat).save(path)
    out = tmp_path / "out"
    code, err = run_cli("generate", *map(str, inputs), "-o", str(out), "--param", "resolution=32")
    assert code == 0, err
    assert names_in(out) == ["x-2.glb", "x-2_normal.png", "x-3.glb", "x-3_normal.png", "x.glb", "x_normal.png"]
    notes = [line for line in err.splitlines() if line.startswith("note: ")]
    assert len(notes) == 2 and str(inputs[1]) in notes[0] and "x-2" in notes[0]
    maps = [np.asarray(Image.open(out / f"{s}_normal.png")) for s in ("x", "x-2")]
    assert maps[0].shape == maps[1].shape
