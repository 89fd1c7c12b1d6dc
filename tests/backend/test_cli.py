"""The command line as scripted users run it: ``python -m backend generate|normals`` in a real subprocess."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from .conftest import REPO, blob_rgba, png_bytes


def run_cli(*args: str, stderr_tty: bool = False) -> tuple[int, str]:
    """Run the CLI; returns (exit code, what it wrote to stderr). With ``stderr_tty`` stderr is a terminal."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "backend", *args]
    if not stderr_tty:
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        return done.returncode, done.stderr
    leader, follower = pty.openpty()
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return proc.wait(timeout=600), b"".join(chunks).decode("utf-8", "replace")


def test_generate_writes_a_watertight_glb_and_a_normal_map(tmp_path):
    image = tmp_path / "blob.png"
    Image.fromarray(blob_rgba(512)).save(image)  # RGBA, 512 px
    code, err = run_cli("generate", str(image), "-o", str(tmp_path / "out"))
    assert code == 0, err
    assert err == "", "not a terminal: quiet"
    mesh = trimesh.load(tmp_path / "out" / "blob.glb", force="mesh", process=False)
    mesh.merge_vertices(merge_tex=True, merge_norm=True)  # the file splits vertices at sharp edges and materials
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0
    assert len(mesh.split(only_watertight=False)) == 1
    assert (tmp_path / "out" / "blob_normal.png").is_file()


def test_failures_get_one_line_each_and_the_rest_still_runs(tmp_path):
    good, broken, missing = tmp_path / "good.png", tmp_path / "broken.png", tmp_path / "missing.png"
    good.write_bytes(png_bytes(blob_rgba(128)))
    broken.write_bytes(b"not an image at all\n")
    code, err = run_cli("generate", str(broken), str(good), str(missing), "-o", str(tmp_path / "out"),
                        "--param", "resolution=64")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("FAILED ") for line in lines), err
    assert str(broken) in lines[0] and str(missing) in lines[1]
    assert (tmp_path / "out" / "good.glb").is_file() and not (tmp_path / "out" / "broken.glb").exists()


def test_progress_bar_on_a_terminal(tmp_path):
    image = tmp_path / "blob.png"
    image.write_bytes(png_bytes(blob_rgba(128)))
    code, err = run_cli("generate", str(image), "-o", str(tmp_path / "out"), "--param", "resolution=64",
                        stderr_tty=True)
    assert code == 0, err
    assert "\r[1/1] blob.png" in err and "1/1 done in" in err


def test_normals_command_writes_only_the_normal_map(tmp_path):
    image = tmp_path / "blob.png"
    image.write_bytes(png_bytes(blob_rgba(128)))
    out = tmp_path / "out"
    code, err = run_cli("normals", str(image), "-o", str(out), "--convention", "directx")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["blob_normal.png"]
    pixels = np.asarray(Image.open(out / "blob_normal.png"))
    assert pixels.shape[:2] == (128, 128)


def test_bad_arguments_exit_non_zero(tmp_path):
    code, err = run_cli("generate", str(tmp_path / "x.png"), "--param", "no-equals-sign")
    assert code != 0 and "NAME=VALUE" in err
    code, _ = run_cli("generate", str(tmp_path / "x.png"), "--engine", "nope", "-o", str(tmp_path))
    assert code == 1


def test_a_seed_out_of_range_is_refused_before_anything_runs(tmp_path):
    image = tmp_path / "x.png"
    image.write_bytes(png_bytes(blob_rgba()))
    for seed in ("-5", str(2**40)):
        code, err = run_cli("generate", str(image), "--seed", seed, "-o", str(tmp_path / "out"))
        assert code == 2 and "seed cannot be" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists(), "nothing was written"


def test_an_output_that_is_a_pipe_is_one_clear_line(tmp_path):
    image, pipe = tmp_path / "x.png", tmp_path / "pipe"
    image.write_bytes(png_bytes(blob_rgba()))
    os.mkfifo(pipe)
    code, err = run_cli("generate", str(image), "-o", str(pipe))
    assert code == 1 and "special file" in err and len(err.strip().splitlines()) == 1


def test_cli_module_has_no_import_time_work():
    assert "import torch" not in Path(REPO, "backend", "cli.py").read_text().split("def ")[0]


def test_mask_per_image_with_the_stem_placeholder(tmp_path):
    photo = (np.random.default_rng(1).random((80, 80, 3)) * 255).astype(np.uint8)
    (tmp_path / "masks").mkdir()
    Image.fromarray(photo).save(tmp_path / "cat.png")
    mask = np.zeros((80, 80), np.uint8)
    mask[10:70, 20:60] = 255
    Image.fromarray(mask).save(tmp_path / "masks" / "cat.png")
    code, err = run_cli("generate", str(tmp_path / "cat.png"), "-o", str(tmp_path / "out"),
                        "--mask", str(tmp_path / "masks" / "{stem}.png"), "--param", "resolution=48")
    assert code == 0, err
    mesh = trimesh.load(tmp_path / "out" / "cat.glb", force="mesh", process=False)
    mesh.merge_vertices(merge_tex=True, merge_norm=True)
    assert mesh.is_watertight and mesh.extents[1] > mesh.extents[0] * 1.2  # GLB is Y-up: the tall mask box
