"""Hostile input through the real processes: ``python -m backend serve`` and the command line.

Each case ends in a clear error (or a correct result), the backend keeps serving, and no program is started.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend import protocol as P

from .conftest import REPO, BackendProcess, blob_rgba, png_bytes
from .test_hostile_images import EPS, big_photo

TINY = [(1, 1), (1, 500), (2, 2), (3, 3), (8, 8)]


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``python -m backend ARGS``; (exit code, stderr). The generous timeout only catches a hang."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    done = subprocess.run([sys.executable, "-m", "backend", *args], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=300)
    return done.returncode, done.stderr


def failed_lines(err: str) -> list[str]:
    lines = err.strip().splitlines()
    assert all(line.startswith("FAILED ") for line in lines), err
    assert "Traceback" not in err and "unexpected error" not in err, err
    return lines


@pytest.fixture
def fake_ghostscript(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A ``gs`` first on PATH that leaves a marker file when anything runs it."""
    folder, marker = tmp_path / "bin", tmp_path / "gs-ran"
    folder.mkdir()
    gs = folder / "gs"
    gs.write_text(f"#!/bin/sh\ntouch '{marker}'\nexit 1\n")
    gs.chmod(gs.stat().st_mode | stat.S_IXUSR)
    return {"PATH": f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"}, marker


@pytest.fixture
def specials(tmp_path: Path):  # noqa: ANN201 - an iterator of paths
    """A FIFO without a writer, a device and a listening socket, as image paths."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes on this system")
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "socket.png"))
    sock.listen()
    yield [str(fifo), "/dev/zero", str(tmp_path / "socket.png")]
    sock.close()


def _still_serving(proc: BackendProcess, rid: int = 999) -> None:
    proc.send(P.Ping(), rid)
    while True:
        msg, got = proc.next(60)
        if isinstance(msg, P.Pong):
            assert got == rid
            return


def _works(proc: BackendProcess, rid: int) -> None:
    """The worker is free again: a small request completes."""
    proc.send(P.Generate(image_name="blob.png", params={"resolution": 32},
                         image_bytes=np.frombuffer(png_bytes(blob_rgba(64)), np.uint8)), rid)
    out = proc.collect(rid, timeout=120)
    assert out["error"] is None and out["done"] is not None, out["error"]


# ------------------------------------------------------------------------------------------- serve


def test_eps_through_serve_is_refused_and_starts_no_program(fake_ghostscript):
    env, marker = fake_ghostscript
    proc = BackendProcess(env=env)
    try:
        proc.expect(P.Hello, timeout=120)
        proc.send(P.Generate(image_name="drawing.eps", image_bytes=np.frombuffer(EPS, np.uint8)), 1)
        err = proc.collect(1, timeout=120)["error"]
        assert err is not None and err.code == "bad_input" and "EPS" in err.message
        _still_serving(proc)
    finally:
        proc.close()
    assert not marker.exists(), "Ghostscript was started"


def test_special_files_as_paths_are_refused_at_once_and_the_worker_stays_free(backend, specials, tmp_path):
    good = tmp_path / "blob.png"
    good.write_bytes(png_bytes(blob_rgba(64)))
    rid = 10
    for path in specials:
        for fields in ({"image_path": path}, {"image_path": str(good), "mask_path": path},
                       {"image_path": str(good), "normal_path": path}):
            rid += 1
            backend.send(P.Generate(image_name="x", params={"resolution": 32}, **fields), rid)
            err = backend.collect(rid, timeout=60)["error"]  # the collector's own timer catches a hang
            assert err is not None and err.code == "bad_input" and "not a regular file" in err.message, err
            _still_serving(backend)
    _works(backend, rid + 1)


def test_a_large_image_is_cancelled_within_its_first_stage(backend):
    data = big_photo(6000)  # 36 MP, a small file
    backend.send(P.Generate(image_name="big.png", image_bytes=np.frombuffer(data, np.uint8)), 40)
    first, rid = backend.expect(P.Progress, timeout=300)
    assert rid == 40 and first.step == 0
    backend.send(P.Cancel(), 40)
    out = backend.collect(40, timeout=300)
    assert out["error"] is not None and out["error"].code == "cancelled", out
    assert [p.step for p in out["progress"]] in ([], [1]), "at most the next step before the cancel lands"
    assert out["meshes"] == []
    _still_serving(backend)
    _works(backend, 41)


# ------------------------------------------------------------------------------------------- command line


def test_eps_through_the_cli_is_refused_and_starts_no_program(tmp_path, fake_ghostscript):
    env, marker = fake_ghostscript
    (tmp_path / "drawing.eps").write_bytes(EPS)
    (tmp_path / "disguised.png").write_bytes(EPS)
    code, err = cli("generate", str(tmp_path / "drawing.eps"), str(tmp_path / "disguised.png"),
                    "-o", str(tmp_path / "out"), env=env)
    assert code == 1
    lines = failed_lines(err)
    assert len(lines) == 2 and all("EPS" in line and "accepted: PNG" in line for line in lines)
    assert not marker.exists(), "Ghostscript was started"


@pytest.mark.parametrize("command", ["generate", "normals"])
def test_degenerate_shapes_fail_clearly_in_every_engine(tmp_path, command):
    paths = []
    for w, h in TINY:
        rgba = np.zeros((h, w, 4), np.uint8)
        rgba[..., 3] = 255
        Image.fromarray(rgba).save(tmp_path / f"s{w}x{h}.png")
        paths.append(str(tmp_path / f"s{w}x{h}.png"))
    flat = np.full((64, 64, 3), (128, 128, 255), np.uint8)
    Image.fromarray(flat).save(tmp_path / "flat_normals.png")
    for engine in ("relief", "hi3dgen"):  # hi3dgen's normals need no weights with a given normal map
        extra = ["--normal-map", str(tmp_path / "flat_normals.png")] if engine == "hi3dgen" else []
        code, err = cli(command, *paths, "-o", str(tmp_path / "out"), "--engine", engine, *extra)
        assert code == 1
        lines = failed_lines(err)
        assert len(lines) == len(TINY) and all("too small" in line for line in lines), err


def test_special_files_in_the_cli_each_fail_on_one_line(tmp_path, specials):
    good = tmp_path / "blob.png"
    good.write_bytes(png_bytes(blob_rgba(64)))
    out = str(tmp_path / "out")
    code, err = cli("generate", *specials, str(good), "-o", out, "--param", "resolution=32")
    assert code == 1
    lines = failed_lines(err)
    assert len(lines) == 3 and all("not a regular file" in line for line in lines)
    assert (tmp_path / "out" / "blob.glb").is_file()
    for option in ("--mask", "--normal-map"):
        code, err = cli("normals", str(good), option, specials[0], "-o", out)
        assert code == 1 and len(failed_lines(err)) == 1 and "named pipe" in err


def test_leading_dash_and_newline_names_stay_one_path(tmp_path):
    existing = [tmp_path / "-x.png", tmp_path / "a\nb.png"]
    for path in existing:
        path.write_bytes(png_bytes(blob_rgba(64)))
    missing = [tmp_path / "-gone.png", tmp_path / "c\nd.png"]
    out = tmp_path / "out"
    code, err = cli("generate", "-o", str(out), "--param", "resolution=32", "--",
                    *(str(p) for p in existing + missing))
    assert code == 1
    lines = failed_lines(err)
    assert len(lines) == 2, err
    assert lines[0].startswith(f"FAILED {tmp_path}/-gone.png: Image file not found")
    assert lines[1].startswith(f"FAILED {tmp_path}/c\\nd.png: Image file not found") and "c\\nd.png" in lines[1]
    assert (out / "-x.glb").is_file() and (out / "a\nb.glb").is_file()
    code, err = cli("normals", "-o", str(out), "--", "-x.png")  # relative, after '--'
    assert code == 1 and "FAILED -x.png: Image file not found" in err  # the CLI's cwd is the repository
    code, err = cli("normals", "-x.png", "-o", str(out))  # without '--' it is an option: a usage error
    assert code == 2 and "usage:" in err
