"""The add-on's download layer (no bpy): the JSON lines it parses, the command it builds (remote prefixes
too), and a real ``python -m backend download`` child against a stand-in Hub on 127.0.0.1: progress,
cancel mid-file (the child ends, the part stays), then a resume that asks only for the rest."""

from __future__ import annotations

import ast
import hashlib
import os
import shlex
import time
from pathlib import Path

import pytest

from blender_addon import downloads as D
from blender_addon.settings import BackendConfig
from tests.hub_server import HubServer

REPO = Path(__file__).resolve().parents[2]
BACKEND_PYTHON = Path(os.environ.get("HI3DGEN_TEST_BACKEND_PYTHON", REPO / ".venv" / "bin" / "python"))
RMBG = "briaai/RMBG-1.4"


def test_the_module_is_bpy_free():
    tree = ast.parse((REPO / "blender_addon" / "downloads.py").read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "bpy" not in names | modules


def test_lines_that_are_not_events_are_ignored():
    assert D.parse_line('{"event": "progress", "done": 1}\n') == {"event": "progress", "done": 1}
    for junk in ("Welcome to gpu-box", "{not json", '{"no": "event"}', "[1, 2]", '{"event": 3}', ""):
        assert D.parse_line(junk) is None


def test_events_drive_the_status_and_the_bar_text():
    status = D.Status()
    assert D.status_text(status) == "Starting the download..." and D.fraction(status) == 0.0
    D.apply_event(status, {"event": "plan", "root": "/w", "remaining": 2_000_000_000, "free": 10**12,
                           "models": [{"name": "dinov2", "repo_id": "facebook/x", "licence": "Apache-2.0",
                                       "total": 2_000_000_000, "remaining": 2_000_000_000}]})
    assert status.plan is not None and status.total == 2_000_000_000
    D.apply_event(status, {"event": "progress", "model": "dinov2", "file": "model.safetensors",
                           "done": 500_000_000, "total": 2_000_000_000, "rate": 25_000_000.0, "eta": 60.0})
    assert D.fraction(status) == 0.25
    assert D.status_text(status) == "dinov2: 500.0 MB of 2.0 GB, 25.0 MB/s, 1 min 00 s left"
    D.apply_event(status, {"event": "progress", "done": "lots", "total": -1, "rate": None, "eta": "x"})
    assert (status.done, status.total, status.rate, status.eta) == (0, 0, 0.0, None)  # bad values: harmless
    D.apply_event(status, {"event": "error", "code": "cancelled", "message": "Download cancelled.", "hint": "h"})
    assert status.finished and status.error is not None and status.error.code == "cancelled"


def test_the_plan_lines_name_sizes_licences_and_too_little_space():
    plan = D.parse_plan({"root": "/w", "remaining": 3_000_000_000, "free": 1_000_000_000, "models": [
        {"name": "trellis-normal", "repo_id": "Stable-X/trellis-normal-v0-1", "licence": "MIT",
         "total": 3_000_000_000, "remaining": 3_000_000_000},
        {"name": "dinov2", "repo_id": "facebook/x", "licence": "Apache-2.0", "total": 5, "remaining": 0,
         "found_at": "/hf"}, "junk"]})
    lines = plan.lines()
    assert lines[0] == "trellis-normal (Stable-X/trellis-normal-v0-1): 3.0 GB; licence MIT"
    assert lines[1] == "dinov2 (facebook/x): already present; licence Apache-2.0"
    assert lines[-1] == "1.0 GB free there - NOT ENOUGH"


def test_the_command_runs_through_the_backend_interpreter_and_the_remote_prefix():
    local = D.download_config(BackendConfig(python="/venv/bin/python", backend_root="/addon",
                                            weights_dir="/w"), ["hi3dgen"])
    assert local.command() == ["/venv/bin/python", "-m", "backend", "download", "hi3dgen", "--json", "--yes"]
    assert local.process_env({})["HI3DGEN_WEIGHTS"] == "/w"
    remote = D.download_config(BackendConfig(python="/opt/py", backend_root="/addon", prefix=("ssh", "box"),
                                             remote_root="/srv/hi3dgen", weights_dir="/data/w x"),
                               ["segmenter"], plan_only=True)
    argv = remote.command()
    assert argv[:2] == ["ssh", "box"] and len(argv) == 3  # one quoted line for the remote shell
    inner = shlex.split(argv[2])
    assert inner[0] == "env" and "HI3DGEN_WEIGHTS=/data/w x" in inner and "PYTHONPATH=/srv/hi3dgen" in inner
    assert inner[-7:] == ["/opt/py", "-m", "backend", "download", "segmenter", "--json", "--plan"]
    assert D.wanted_models(["torch", "dinov2", 3, ""]) == ["dinov2"]


# ---------------------------------------------------------------------------- a real child process


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A stand-in Hub serving an rmbg repository of random bytes (the downloader never parses them)."""
    repo = tmp_path / "rmbg-src"
    repo.mkdir()
    (repo / "config.json").write_text('{"model_type": "SegformerForSemanticSegmentation"}')
    (repo / "model.safetensors").write_bytes(os.urandom(3_000_000))
    with HubServer() as server:
        server.state.repos[RMBG] = repo
        server.state.licence = "other"
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        yield server, repo


def _config(tmp_path: Path) -> BackendConfig:
    return BackendConfig(python=str(BACKEND_PYTHON), backend_root=str(REPO), weights_dir=str(tmp_path / "w"))


def _wait_for(check, timeout: float = 60.0) -> None:  # noqa: ANN001 - a predicate
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.skipif(not BACKEND_PYTHON.exists(), reason="backend venv (.venv) not installed")
def test_plan_then_cancel_mid_file_then_resume(hub, tmp_path):
    server, repo = hub
    config = _config(tmp_path)
    plan = D.fetch_plan(config, ["segmenter"])
    assert [m.name for m in plan.models] == ["rmbg"] and "non-commercial" in plan.models[0].licence
    assert plan.remaining == sum(p.stat().st_size for p in repo.iterdir()) and not server.state.requests

    server.state.stall.add(f"{RMBG}/model.safetensors")  # half the file, then the server waits
    run = D.DownloadRun(D.download_config(config, ["segmenter"]))
    part = tmp_path / "w" / "rmbg" / "model.safetensors.part"
    assert server.state.stall_reached.wait(60)
    _wait_for(lambda: part.is_file() and part.stat().st_size > 0)
    seen = run.snapshot()
    assert seen.plan is not None and seen.total == plan.remaining
    run.cancel()
    status = run.wait(60)
    server.state.stall_release.set()
    assert status.finished and status.error is not None and status.error.code == "cancelled", status.error
    kept = part.stat().st_size
    assert 0 < kept < 3_000_000 and not (tmp_path / "w" / "rmbg" / "model.safetensors").exists()

    again = D.DownloadRun(D.download_config(config, ["segmenter"]))
    done = again.wait(120)
    assert done.error is None and done.folders == {"rmbg": str(tmp_path / "w" / "rmbg")}
    assert done.done == done.total > 0 and D.fraction(done) == 1.0
    assert server.file_requests("model.safetensors")[-1] == f"bytes={kept}-"
    got = (tmp_path / "w" / "rmbg" / "model.safetensors").read_bytes()
    assert hashlib.sha256(got).digest() == hashlib.sha256((repo / "model.safetensors").read_bytes()).digest()


@pytest.mark.skipif(not BACKEND_PYTHON.exists(), reason="backend venv (.venv) not installed")
def test_a_refused_endpoint_is_a_readable_failure(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(D.DownloadFailed, match="Cannot reach the Hub") as info:
        D.fetch_plan(_config(tmp_path), ["segmenter"])
    assert "network" in info.value.hint
    broken = BackendConfig(python=str(tmp_path / "no-python"), backend_root=str(REPO))
    with pytest.raises(D.DownloadFailed, match="Could not start"):
        D.fetch_plan(broken, ["segmenter"])
