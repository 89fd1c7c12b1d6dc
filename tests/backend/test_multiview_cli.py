"""Multi-view input from the outside: ``generate --views`` in a real subprocess on tiny random weights in the
release layout (a folder of views of different sizes, a missing view, a view with no foreground, the relief
engine's refusal), and the protocol's view fields."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from backend import protocol as P
from backend.errors import BadInput

from .conftest import blob_rgba, png_bytes
from .test_cli import run_cli
from .tiny_weights import write_tiny_weights

FAST = ["--param", "ss_steps=2", "--param", "slat_steps=1", "--param", "normal_resolution=64",
        "--param", "align=false"]


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_weights(tmp_path_factory.mktemp("weights"))


def _views(folder: Path, sizes: tuple[int, ...]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, size in enumerate(sizes):
        path = folder / f"view{n}.png"
        Image.fromarray(np.rot90(blob_rgba(size), n).copy()).save(path)
        paths.append(path)
    return paths


def test_a_folder_of_views_of_different_sizes_gives_one_mesh(weights_dir, tmp_path):
    _views(tmp_path / "views", (96, 64, 128))
    out = tmp_path / "out"
    code, err = run_cli("generate", str(tmp_path / "views"), "--views", "--engine", "hi3dgen", "-o", str(out),
                        "--weights-dir", str(weights_dir), "--view-angles", "0,90,180",
                        "--param", "multiview_mode=multidiffusion", *FAST)
    assert code == 0, err
    assert "3 views" in err
    assert sorted(p.name for p in out.iterdir()) == ["view0.glb", "view0_normal.png"]
    mesh = trimesh.load(out / "view0.glb", force="mesh")
    assert len(mesh.faces) > 0


def test_a_missing_view_is_refused_before_anything_loads(weights_dir, tmp_path):
    front, _ = _views(tmp_path, (64, 64))
    code, err = run_cli("generate", str(front), str(tmp_path / "side.png"), "--views", "--engine", "hi3dgen",
                        "-o", str(tmp_path / "out"), "--weights-dir", str(weights_dir))
    assert code == 2 and "View 2" in err and "side.png" in err and "not a readable file" in err
    assert not (tmp_path / "out").exists()


def test_a_view_with_no_foreground_fails_naming_the_view(weights_dir, tmp_path):
    front, side = _views(tmp_path, (64, 64))
    side.write_bytes(png_bytes(np.zeros((64, 64, 4), np.uint8)))
    code, err = run_cli("generate", str(front), str(side), "--views", "--engine", "hi3dgen",
                        "-o", str(tmp_path / "out"), "--weights-dir", str(weights_dir), *FAST)
    assert code == 1 and "FAILED" in err and "View 2: No foreground" in err


def test_the_relief_engine_refuses_several_views(tmp_path):
    front, side = _views(tmp_path, (64, 64))
    code, err = run_cli("generate", str(front), str(side), "--views", "-o", str(tmp_path / "out"))
    assert code == 1 and "relief engine makes a relief from one picture" in err and "hi3dgen" in err
    code, err = run_cli("generate", str(front), "--views", "-o", str(tmp_path / "out"))
    assert code == 2 and "at least two views" in err


def test_views_travel_in_the_generate_frame_and_are_split_by_size(tmp_path):
    from backend.server import _views as server_views

    a, b = png_bytes(blob_rgba(64)), png_bytes(blob_rgba(80))
    path = tmp_path / "third.png"
    path.write_bytes(png_bytes(blob_rgba(48)))
    msg = P.Generate(engine="hi3dgen", view_paths=[str(path)], view_angles=[0, 90, 180, 270],
                     view_bytes=np.frombuffer(a + b, np.uint8), view_sizes=[len(a), len(b)])
    back, _ = P.decode_bytes(P.encode_bytes(msg))
    assert back.view_sizes == [len(a), len(b)] and back.view_paths == [str(path)]
    views, angles = server_views(back)
    assert [v.rgba.shape[0] for v in views] == [48, 64, 80] and angles == (0.0, 90.0, 180.0, 270.0)
    with pytest.raises(BadInput, match="do not split"):
        server_views(P.Generate(view_bytes=np.frombuffer(a, np.uint8), view_sizes=[len(a) - 1]))
    with pytest.raises(BadInput, match="one finite number per view"):
        server_views(P.Generate(view_paths=[str(path)], view_angles=[0.0]))
