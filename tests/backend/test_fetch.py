"""Downloads against a stand-in Hub on 127.0.0.1 (tests/hub_server.py) serving tiny release-layout repositories:
the plan (sizes, licences), progress, resume after a dropped connection and after a cancel (HTTP Range),
checksums (sha256 and git blob ids), refused and unreachable endpoints, the disk-space check, the CLI with
--json, and that the downloaded folders pass the weights lookup and load into the hi3dgen engine."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
from collections import namedtuple
from pathlib import Path

import pytest
import torch

from backend import downloads, hub
from backend.fetch import FetchCancelled, FetchError, FetchOptions, Progress
from backend.jobs import JobContext
from backend.models.testing import write_dinov2_folder, write_release_folder
from backend.settings import BackendSettings
from backend.weights import MODELS
from tests.hub_server import COMMIT, HubServer

from .test_nirne import write_release as write_yoso_folder

ROOT = Path(__file__).resolve().parents[2]
REPO = {name: MODELS[name].repo_id for name in MODELS}


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny repositories as the Hub holds them (the NiRNE one with its remote-code file)."""
    root = tmp_path_factory.mktemp("hub")
    return {REPO["trellis-normal"]: release_names(write_release_folder(root / "trellis")),
            REPO["dinov2"]: write_dinov2_folder(root / "dinov2"),
            REPO["yoso-normal"]: write_yoso_folder(root / "yoso")}


@pytest.fixture
def server(sources, monkeypatch, tmp_path):
    with HubServer() as hub_server:
        hub_server.state.repos.update(sources)
        monkeypatch.setenv("HF_ENDPOINT", hub_server.url)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no saved token, no cache
        for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE"):
            monkeypatch.delenv(name, raising=False)
        yield hub_server


@pytest.fixture
def settings(tmp_path) -> BackendSettings:
    return BackendSettings(weights_dir=str(tmp_path / "weights"), context="cli")


RELEASE_PREFIX = {"sparse_structure_flow_model": "ss_flow", "sparse_structure_decoder": "ss_dec",
                  "slat_flow_model": "slat_flow", "slat_decoder_mesh": "slat_dec_mesh"}


def release_names(folder: Path) -> Path:
    """Rename the tiny checkpoints as the release names its own (ckpts/ss_flow_..., ckpts/slat_dec_mesh_...)."""
    pipeline = json.loads((folder / "pipeline.json").read_text())
    models = pipeline["args"]["models"]
    for name, base in models.items():
        new = f"ckpts/{RELEASE_PREFIX[name]}_{Path(base).name}"
        for ext in (".json", ".safetensors"):
            (folder / f"{base}{ext}").rename(folder / f"{new}{ext}")
        models[name] = new
    (folder / "pipeline.json").write_text(json.dumps(pipeline))
    return folder


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _same_files(source: Path, folder: Path, suffix: str) -> None:
    for src in source.rglob(f"*{suffix}"):
        assert _sha(folder / src.relative_to(source)) == _sha(src), src


def _no_parts(root: Path) -> bool:
    return not list(root.rglob("*.part"))


# --------------------------------------------------------------------------------------------- the plan


def test_the_plan_names_sizes_and_licences_and_leaves_out_remote_code(server, settings, sources):
    plan = downloads.plan_download(["hi3dgen"], settings)
    by_name = {m.name: m for m in plan.models}
    assert list(by_name) == ["trellis-normal", "dinov2", "yoso-normal"]
    assert {n: m.licence for n, m in by_name.items()} == {
        "trellis-normal": "MIT", "dinov2": "Apache-2.0", "yoso-normal": "Apache-2.0"}
    yoso = sources[REPO["yoso-normal"]]
    wanted = [p for p in yoso.rglob("*") if p.is_file() and p.suffix in (".json", ".safetensors")]
    assert by_name["yoso-normal"].total == sum(p.stat().st_size for p in wanted)
    assert not any(f.path.endswith(".py") for f in by_name["yoso-normal"].files)  # never code from a repo
    assert plan.remaining == sum(m.total for m in plan.models) and not server.state.requests
    assert all(f.url.startswith(f"{server.url}/") and f"/resolve/{COMMIT}/" in f.url
               for m in plan.models for f in m.files)


def test_the_download_path_needs_only_the_standard_library():
    """No new dependency, and ``python -m backend download`` starts without torch."""
    import ast

    for name in ("fetch.py", "hub.py", "downloads.py", "download_cli.py"):
        tree = ast.parse((ROOT / "backend" / name).read_text())
        absolute = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        absolute |= {n.module.split(".")[0] for n in ast.walk(tree)
                     if isinstance(n, ast.ImportFrom) and n.level == 0 and n.module}
        assert absolute <= set(sys.stdlib_module_names) | {"__future__"}, name
    code = "import sys, backend.cli, backend.download_cli, backend.downloads; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_unsafe_names_in_a_listing_are_refused():
    for bad in ("../evil.json", "/etc/passwd", "a/../../b", "c:\\x", ""):
        with pytest.raises(FetchError, match="unusable name"):
            hub.parse_listing("x/y", {"siblings": [{"rfilename": bad, "size": 1}]})
    with pytest.raises(FetchError, match="no size"):
        hub.parse_listing("x/y", {"siblings": [{"rfilename": "a.json"}]})


# ----------------------------------------------------------------------------- download, verify, load


def test_download_reports_progress_and_the_engine_loads_the_result(server, settings, sources):
    from backend.devices import Placement
    from backend.engines.hi3dgen import Hi3DGenEngine
    from backend.nirne.pipeline import NirneEstimator
    from backend.pipelines.hi3dgen import GeometryModels
    from backend.weights import resolve

    events: list[tuple[Progress, str]] = []
    plan = downloads.plan_download(["hi3dgen"], settings)
    folders = downloads.run_plan(plan, lambda p, model: events.append((p, model)), interval=0.0)
    done = [p.done for p, _ in events]
    assert done == sorted(done) and done[-1] == plan.to_fetch and all(p.total == plan.to_fetch for p, _ in events)
    assert [m for _, m in events if _.file.endswith(".safetensors")][:1] == ["trellis-normal"]
    assert {m for _, m in events} == {"trellis-normal", "dinov2", "yoso-normal"}
    for name in ("trellis-normal", "dinov2", "yoso-normal"):
        assert resolve(name, settings) == folders[name] == Path(settings.weights_dir) / name
        _same_files(sources[REPO[name]], folders[name], ".safetensors")
    assert _no_parts(Path(settings.weights_dir))
    assert not (folders["yoso-normal"] / "controlnet" / "controlnetvae.py").exists()

    status = Hi3DGenEngine(settings).status()
    assert status["available"] and status["weights_present"] and status["missing"] == []
    cpu = Placement(torch.device("cpu"), torch.float32)
    GeometryModels.load(folders["trellis-normal"], folders["dinov2"], cpu)
    NirneEstimator.load(folders["yoso-normal"], cpu, processing_resolution=64)

    server.state.requests.clear()
    again = downloads.plan_download(["hi3dgen"], settings)
    assert again.remaining == 0 and all(m.found_at for m in again.models) and not server.state.requests


def test_a_dropped_connection_resumes_with_a_range_request(server, settings, sources):
    weights = sources[REPO["dinov2"]] / "model.safetensors"
    server.state.drop_once.add(f"{REPO['dinov2']}/model.safetensors")
    events: list[Progress] = []
    plan = downloads.plan_download(["dinov2"], settings)
    downloads.run_plan(plan, lambda p, m: events.append(p), options=FetchOptions(backoff=0.01), interval=0.0)
    ranges = server.file_requests("model.safetensors")
    half = (weights.stat().st_size) // 2
    assert ranges == ["", f"bytes={half}-"]  # the second request asks only for the missing half
    assert _sha(Path(settings.weights_dir) / "dinov2" / "model.safetensors") == _sha(weights)
    assert max(p.done for p in events) == plan.to_fetch == events[-1].done


def test_cancel_mid_file_keeps_the_part_and_the_next_run_resumes(server, settings, sources):
    """Cancel is checked between chunks: set half-way through a file, nothing more is written after it."""
    size = (sources[REPO["dinov2"]] / "model.safetensors").stat().st_size
    cancel = threading.Event()
    seen: dict[str, int] = {}

    def progress(p: Progress, model: str) -> None:
        if p.file == "model.safetensors" and "first" not in seen:
            seen["first"] = p.done  # the config before it is complete
        if p.file == "model.safetensors" and p.done - seen["first"] >= size // 2 and not cancel.is_set():
            seen["at_cancel"] = p.done - seen["first"]
            cancel.set()

    plan = downloads.plan_download(["dinov2"], settings)
    with pytest.raises(FetchCancelled, match="cancelled") as info:
        downloads.run_plan(plan, progress, cancel=cancel, options=FetchOptions(chunk=1024), interval=0.0)
    assert "resume" in info.value.hint
    part = Path(settings.weights_dir) / "dinov2" / "model.safetensors.part"
    kept = part.stat().st_size
    assert kept == seen["at_cancel"] < size  # stopped at the next chunk after the cancel

    resumed = downloads.plan_download(["dinov2"], settings)
    assert resumed.models[0].partial == kept and resumed.remaining == size - kept
    downloads.run_plan(resumed)
    assert server.file_requests("model.safetensors")[-1] == f"bytes={kept}-"
    assert _sha(Path(settings.weights_dir) / "dinov2" / "model.safetensors") == _sha(
        sources[REPO["dinov2"]] / "model.safetensors") and not part.exists()


def test_a_server_that_ignores_the_range_restarts_the_file_from_zero(server, settings, sources):
    key = f"{REPO['dinov2']}/model.safetensors"
    server.state.drop_once.add(key)
    server.state.ignore_range.add(key)
    events: list[Progress] = []
    plan = downloads.plan_download(["dinov2"], settings)
    downloads.run_plan(plan, lambda p, m: events.append(p), options=FetchOptions(backoff=0.01), interval=0.0)
    assert len(server.file_requests("model.safetensors")) == 2
    assert _sha(Path(settings.weights_dir) / "dinov2" / "model.safetensors") == _sha(
        sources[REPO["dinov2"]] / "model.safetensors")
    assert events[-1].done == plan.to_fetch and max(p.done for p in events) <= plan.to_fetch  # not counted twice


def test_busy_answers_are_retried_and_the_token_goes_to_the_endpoint(server, settings, sources, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    server.state.fail_first[f"{REPO['dinov2']}/model.safetensors"] = [503, 429]
    downloads.run_plan(downloads.plan_download(["dinov2"], settings), options=FetchOptions(backoff=0.01))
    assert len(server.file_requests("model.safetensors")) == 3
    assert set(server.state.auth) == {"Bearer hf_test_token"}
    assert _sha(Path(settings.weights_dir) / "dinov2" / "model.safetensors") == _sha(
        sources[REPO["dinov2"]] / "model.safetensors")


def test_redirects_keep_the_range_and_the_token_stays_on_the_hub_host(server, settings, sources, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    weights, config = f"{REPO['dinov2']}/model.safetensors", f"{REPO['dinov2']}/config.json"
    server.state.redirect.update({weights: "other", config: "same"})
    server.state.drop_once.add(weights)
    downloads.run_plan(downloads.plan_download(["dinov2"], settings), options=FetchOptions(backoff=0.01))
    assert server.state.cdn_auth == {weights: "", config: "Bearer hf_test_token"}  # no token to another host
    assert server.file_requests("model.safetensors")[-1].startswith("bytes=")  # the resume went through it
    assert _sha(Path(settings.weights_dir) / "dinov2" / "model.safetensors") == _sha(
        sources[REPO["dinov2"]] / "model.safetensors")


def test_a_gated_model_says_to_set_the_token_and_endless_failures_give_up(server, settings):
    key = f"{REPO['dinov2']}/model.safetensors"
    server.state.fail_first[key] = [401]
    plan = downloads.plan_download(["dinov2"], settings)
    with pytest.raises(FetchError, match="401") as info:
        downloads.run_plan(plan)
    assert "HF_TOKEN" in info.value.hint
    server.state.fail_first[key] = [503] * 10
    with pytest.raises(FetchError, match="failed 3 times in a row") as info:
        downloads.run_plan(plan, options=FetchOptions(backoff=0.01, retries=3))
    assert "resumes" in info.value.hint


def test_without_a_weights_folder_models_go_to_the_default_one_the_lookup_reads(server, tmp_path, monkeypatch):
    from backend.weights import default_weights_dir, resolve

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    settings = BackendSettings()
    assert default_weights_dir() == tmp_path / "cache" / "hi3dgen" / "weights"
    folders = downloads.run_plan(downloads.plan_download(["dinov2"], settings))
    assert folders["dinov2"] == default_weights_dir() / "dinov2" == resolve("dinov2", settings)


# ----------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("name", ["model.safetensors", "config.json"])
def test_a_checksum_mismatch_is_refused_and_the_bad_part_deleted(server, settings, name):
    server.state.corrupt.add(f"{REPO['dinov2']}/{name}")
    plan = downloads.plan_download(["dinov2"], settings)
    kind = "sha256" if name.endswith(".safetensors") else "git blob id"
    with pytest.raises(FetchError, match=f"{name} is corrupt: its {kind}") as info:
        downloads.run_plan(plan)
    assert "HF_ENDPOINT" in info.value.hint
    folder = Path(settings.weights_dir) / "dinov2"
    assert not (folder / name).exists() and _no_parts(folder)


def test_not_enough_disk_space_is_refused_before_anything_is_fetched(server, settings):
    Usage = namedtuple("Usage", "total used free")
    plan = downloads.plan_download(["hi3dgen"], settings)
    with pytest.raises(FetchError, match="Not enough free disk space") as info:
        downloads.run_plan(plan, disk_usage=lambda path: Usage(10**9, 10**9, 1000))
    assert "larger disk" in info.value.hint and not server.state.requests


def test_unreachable_and_unknown_endpoints_give_clear_errors(server, settings, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed}")
    with pytest.raises(FetchError, match="Cannot reach the Hub") as info:
        downloads.plan_download(["dinov2"], settings)
    assert "network" in info.value.hint
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    server.state.repos.pop(REPO["dinov2"])
    with pytest.raises(FetchError, match="404") as info:
        downloads.plan_download(["dinov2"], settings)
    assert "HF_ENDPOINT" in info.value.hint
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FetchError, match="HF_HUB_OFFLINE"):
        downloads.plan_download(["yoso-normal"], settings)


def test_a_file_gone_from_the_server_is_a_clear_404(server, settings, sources, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(sources[REPO["dinov2"]], copy)
    server.state.repos[REPO["dinov2"]] = copy
    plan = downloads.plan_download(["dinov2"], settings)
    (copy / "model.safetensors").unlink()
    with pytest.raises(FetchError, match="model.safetensors failed: 404"):
        downloads.run_plan(plan)


# ------------------------------------------------------------------ generation's automatic download


@pytest.fixture
def auto(settings, monkeypatch) -> BackendSettings:
    """Settings that allow the engine to download, with a small chunk and short pauses."""
    from backend import weights

    monkeypatch.setattr(weights, "fetch_options", lambda: FetchOptions(chunk=1024, backoff=0.01))
    return BackendSettings(weights_dir=settings.weights_dir, context="cli", allow_download=True)


def _recording_ctx() -> tuple[JobContext, list[tuple[str, int, int, str]]]:
    steps: list[tuple[str, int, int, str]] = []
    return JobContext(report=lambda *a: steps.append(a)), steps


def test_generation_downloads_absent_weights_with_the_download_command_code(server, auto, sources):
    """The engine's first request fetches its absent models as ``python -m backend download`` does: one plan,
    into the weights folder, progress as the 'downloading' stage, resume after a dropped connection,
    checksums; the engine then loads them, and a second request touches the network no more."""
    from types import SimpleNamespace

    from backend.engines.hi3dgen import Hi3DGenEngine

    server.state.drop_once.add(f"{REPO['dinov2']}/model.safetensors")
    ctx, steps = _recording_ctx()
    engine = Hi3DGenEngine(auto)
    assert engine._models(SimpleNamespace(placement_name="cpu", params={}), ctx) is not None
    downloading = [s for s in steps if s[0] == "downloading"]
    assert downloading and downloading[0][1] == 0 and "MIT" in downloading[0][3]  # the plan, licences named
    assert {s[3].split("/")[0] for s in downloading[1:]} == {"trellis-normal", "dinov2"}
    assert all(s[1] <= s[2] for s in downloading) and "left" in downloading[-1][3]
    assert server.file_requests("dinov2-with-registers-large/model.safetensors") == [
        "", f"bytes={(sources[REPO['dinov2']] / 'model.safetensors').stat().st_size // 2}-"]
    for name in ("trellis-normal", "dinov2"):
        _same_files(sources[REPO[name]], Path(auto.weights_dir) / name, ".safetensors")
    assert _no_parts(Path(auto.weights_dir))
    server.state.requests.clear()
    Hi3DGenEngine(auto)._models(SimpleNamespace(placement_name="cpu", params={}), JobContext())
    assert not server.state.requests


def test_a_cancel_during_the_automatic_download_keeps_the_part_for_the_next_request(server, auto, sources,
                                                                                    monkeypatch):
    from backend import fetch
    from backend.errors import Cancelled
    from backend.weights import resolve

    key = f"{REPO['dinov2']}/model.safetensors"
    server.state.stall.add(key)  # half the file, then the server waits: the cancel comes mid-file
    ctx, _ = _recording_ctx()
    add, pressed = fetch.ProgressMeter.add, []

    def add_then_cancel(meter: fetch.ProgressMeter, n: int, file: str = "", force: bool = False) -> None:
        add(meter, n, file, force)
        if n > 0 and file.endswith("model.safetensors") and not pressed:  # once the first bytes are in
            pressed.append(True)
            ctx.cancel_event.set()

    monkeypatch.setattr(fetch.ProgressMeter, "add", add_then_cancel)
    try:
        with pytest.raises(Cancelled, match="cancelled while downloading") as info:
            resolve("dinov2", auto, ctx)
    finally:
        server.state.stall_release.set()
    assert "resumes" in info.value.hint
    part = Path(auto.weights_dir) / "dinov2" / "model.safetensors.part"
    kept = part.stat().st_size
    assert 0 < kept < (sources[key.rsplit("/", 1)[0]] / "model.safetensors").stat().st_size
    assert resolve("dinov2", auto) == Path(auto.weights_dir) / "dinov2"
    assert server.file_requests("model.safetensors")[-1] == f"bytes={kept}-" and not part.exists()


def test_automatic_download_failures_say_why_and_what_to_do(server, auto, monkeypatch, tmp_path):
    """No network, no space, a corrupt file, a changed layout: ``WeightsMissing`` (so the panel offers
    Download Weights) naming the cause, the files still missing and the remedy; nothing half-written."""
    from backend import fetch
    from backend.errors import WeightsMissing
    from backend.weights import resolve

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed}")
    with pytest.raises(WeightsMissing, match=r"'dinov2' \(missing: config.json.*\(offline\).*Cannot reach") as info:
        resolve("dinov2", auto)
    assert "network" in info.value.hint
    monkeypatch.setenv("HF_ENDPOINT", server.url)

    Usage = namedtuple("Usage", "total used free")
    with monkeypatch.context() as full:
        full.setattr(fetch.shutil, "disk_usage", lambda path: Usage(10**9, 10**9, 1000))
        with pytest.raises(WeightsMissing, match="Not enough free disk space") as info:
            resolve("dinov2", auto)
    assert "larger disk" in info.value.hint and not server.state.requests

    server.state.corrupt.add(f"{REPO['dinov2']}/model.safetensors")
    with pytest.raises(WeightsMissing, match="corrupt"):
        resolve("dinov2", auto)
    assert _no_parts(Path(auto.weights_dir)) and not (Path(auto.weights_dir) / "dinov2" / "model.safetensors").exists()

    bare = tmp_path / "bare-dinov2"
    bare.mkdir()
    (bare / "config.json").write_text("{}")
    server.state.repos[REPO["dinov2"]] = bare  # the repository no longer has the weights file
    with pytest.raises(WeightsMissing, match="has no file for model.safetensors") as info:
        resolve("dinov2", auto)
    assert "layout" in info.value.hint


# ------------------------------------------------------------------------------------------------ CLI


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "backend", "download", *args], capture_output=True,
                          text=True, env=full, cwd=ROOT, timeout=300, stdin=subprocess.DEVNULL)


def test_the_cli_prints_the_plan_then_json_progress_lines(server, tmp_path):
    env = {"HF_ENDPOINT": server.url, "HF_HOME": str(tmp_path / "hf-home")}
    weights = str(tmp_path / "cli-weights")
    shown = _cli("dinov2", "--plan", "--weights-dir", weights, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "licence Apache-2.0" in shown.stdout and "To download:" in shown.stdout and not server.state.requests
    done = _cli("dinov2", "--json", "--weights-dir", weights, env=env)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[0]["event"] == "plan" and events[0]["models"][0]["licence"] == "Apache-2.0"
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and progress[-1]["done"] == progress[-1]["total"] == events[0]["remaining"]
    assert events[-1] == {"event": "done", "folders": {"dinov2": str(Path(weights) / "dinov2")}}
    text = _cli("dinov2", "--weights-dir", weights, env=env)  # present now: no network, the folder named
    assert text.returncode == 0 and f"dinov2: {Path(weights) / 'dinov2'}" in text.stdout


def test_the_cli_reports_an_error_as_a_json_line(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    done = _cli("segmenter", "--json", "--weights-dir", str(tmp_path),
                env={"HF_ENDPOINT": f"http://127.0.0.1:{closed}", "HF_HOME": str(tmp_path / "h")})
    assert done.returncode == 1
    event = json.loads(done.stdout.splitlines()[-1])
    assert event["event"] == "error" and "Cannot reach the Hub" in event["message"] and event["hint"]
