"""``python -m backend info`` (text and ``--json``) and ``download``'s arguments, in a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from backend.engines.hi3dgen import PARAMS as HI3DGEN_PARAMS
from backend.engines.relief import PARAMS as RELIEF_PARAMS

from .conftest import REPO


def run_cli_stdout(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a subprocess with an empty weights folder and no Hub access; stdout and stderr kept."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "backend", *args], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=180)


def test_info_lists_every_parameter_with_its_range(tmp_path):
    done = run_cli_stdout("info", "--weights-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for spec in (*RELIEF_PARAMS, *HI3DGEN_PARAMS):
        assert f"    {spec.name} " in out
    assert "int 256 (16 to 1024)" in out  # relief resolution: default and range
    assert "enum auto (auto|estimate|learned)" in out  # mask: default and options
    assert "engine hi3dgen: missing: trellis-normal, dinov2, yoso-normal" in out


def test_info_json_is_machine_readable(tmp_path):
    done = run_cli_stdout("info", "--json", "--weights-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["backend_version"] and report["python_version"] and report["torch_version"]
    assert "cpu" in report["devices"]
    engines = {e["name"]: e for e in report["engines"]}
    assert set(engines) >= {"relief", "hi3dgen"}
    relief = {p["name"]: p for p in engines["relief"]["params"]}
    assert relief["resolution"] == {**relief["resolution"], "type": "int", "default": 256, "min": 16, "max": 1024}
    assert relief["mask"]["options"] == ["auto", "estimate", "learned"]
    assert engines["relief"]["available"] and not engines["hi3dgen"]["available"]
    assert engines["hi3dgen"]["missing"] == ["trellis-normal", "dinov2", "yoso-normal"]


def test_info_lists_every_downloadable_model_and_whether_it_is_present(tmp_path):
    from backend.weights import MODELS

    (tmp_path / "rmbg").mkdir()
    (tmp_path / "rmbg" / "model.safetensors").write_bytes(b"")  # presence is a file check, not a load
    done = run_cli_stdout("info", "--weights-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line.split()[1] for line in done.stdout.split("models (")[1].splitlines()[1:]}
    assert lines == {**{name: "missing" for name in MODELS}, "rmbg": "present"}
    report = json.loads(run_cli_stdout("info", "--json", "--weights-dir", str(tmp_path)).stdout)
    assert {m["name"]: m["present"] for m in report["models"]} == {**{n: False for n in MODELS}, "rmbg": True}


def test_download_takes_no_device_and_names_the_known_models(tmp_path):
    done = run_cli_stdout("download", "rmbg", "--device", "cpu", "--weights-dir", str(tmp_path))
    assert done.returncode == 2 and "--device" in done.stderr  # argparse: unrecognized argument
    done = run_cli_stdout("download", "no-such-model", "--weights-dir", str(tmp_path))
    assert done.returncode == 1 and "Known models: trellis-normal, dinov2, yoso-normal, rmbg" in done.stderr
