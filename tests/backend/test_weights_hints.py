"""The hi3dgen engine's "weights missing" error: every absent model at once, in the words of where it runs."""

from __future__ import annotations

import numpy as np

from backend import protocol as P

from .conftest import BackendProcess, blob_rgba, png_bytes
from .test_cli_info import run_cli_stdout

ALL = "python -m backend download trellis-normal dinov2 yoso-normal"


def test_cli_names_every_missing_model_and_the_cli_command(tmp_path):
    image = tmp_path / "blob.png"
    image.write_bytes(png_bytes(blob_rgba(64)))
    done = run_cli_stdout("generate", str(image), "--engine", "hi3dgen", "-o", str(tmp_path / "out"),
                          "--weights-dir", str(tmp_path / "weights"))
    assert done.returncode == 1
    line = done.stderr.strip()
    assert line.count("\n") == 0 and line.startswith("FAILED ")
    for name in ("'trellis-normal'", "'dinov2'", "'yoso-normal'", "pipeline.json", "model_index.json"):
        assert name in line
    assert f"{ALL} --weights-dir {tmp_path / 'weights'}" in line
    assert "add-on" not in line and "preferences" not in line


def test_cli_normals_need_only_nirne(tmp_path):
    image = tmp_path / "blob.png"
    image.write_bytes(png_bytes(blob_rgba(64)))
    done = run_cli_stdout("normals", str(image), "--engine", "hi3dgen", "-o", str(tmp_path / "out"),
                          "--weights-dir", str(tmp_path / "weights"))
    assert done.returncode == 1 and "download yoso-normal --weights-dir" in done.stderr
    assert "dinov2" not in done.stderr


def test_add_on_gets_the_preferences_hint(tmp_path):
    server = BackendProcess(env={"HI3DGEN_WEIGHTS": str(tmp_path / "weights"), "HF_HUB_OFFLINE": "1"})
    try:
        server.expect(P.Hello)
        image = np.frombuffer(png_bytes(blob_rgba(64)), np.uint8)
        server.send(P.Generate(image_bytes=image, engine="hi3dgen"), 1)
        err = server.collect(1)["error"]
        assert err is not None and err.code == "weights_missing"
        assert all(f"'{name}'" in err.message for name in ("trellis-normal", "dinov2", "yoso-normal"))
        assert "add-on preferences" in err.hint and f"{ALL} --weights-dir {tmp_path / 'weights'}" in err.hint
    finally:
        server.close()
