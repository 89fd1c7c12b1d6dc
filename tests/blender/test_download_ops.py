"""Download Weights in real Blender (bpy module, headless) with the installed extension: the operator runs
the bundled backend's download command against a stand-in Hub on 127.0.0.1, Cancel keeps the part, a later
press resumes it, and Blender's online-access switch is honoured for anything but this machine."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.blender.blender_session import bpy
from tests.blender.test_extension import (  # noqa: F401 - module fixtures, one installed extension here
    BACKEND_PYTHON,
    built_zip,
    ext,
    prefs,
)
from tests.hub_server import HubServer

pytestmark = pytest.mark.skipif(not BACKEND_PYTHON.exists(), reason="backend venv (.venv) not installed")
RMBG = "briaai/RMBG-1.4"


@pytest.fixture
def hub(ext, tmp_path, monkeypatch):  # noqa: F811
    repo = tmp_path / "rmbg-src"
    repo.mkdir()
    (repo / "config.json").write_text("{}")
    (repo / "model.safetensors").write_bytes(os.urandom(2_000_000))
    saved = prefs(ext).weights_dir
    prefs(ext).weights_dir = str(tmp_path / "weights")
    with HubServer() as server:
        server.state.repos[RMBG] = repo
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        yield server, repo, tmp_path / "weights" / "rmbg"
    prefs(ext).weights_dir = saved
    ext.weights_ops._State.downloaded.clear()


class _Layout:
    """Records what a draw function asks for."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def row(self, **kw: Any) -> _Layout:
        return self

    def box(self) -> _Layout:
        return self

    def progress(self, **kw: Any) -> None:
        self.calls.append(("progress", kw))

    def label(self, **kw: Any) -> None:
        self.calls.append(("label", kw))

    def operator(self, idname: str, **kw: Any) -> Any:
        self.calls.append(("operator", {"idname": idname, **kw}))
        return type("Props", (), {})()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_operator_downloads_into_the_weights_folder(ext, hub):  # noqa: F811
    server, repo, folder = hub
    assert ext.weights_ops.still_missing(["torch", "rmbg"]) == ["rmbg"]
    assert bpy.ops.hi3dgen.download_weights(models="segmenter") == {"FINISHED"}
    assert _sha(folder / "model.safetensors") == _sha(repo / "model.safetensors")
    assert (folder / "config.json").read_text() == "{}"
    assert ext.weights_ops.still_missing(["torch", "rmbg"]) == []  # the panel stops offering it
    layout = _Layout()
    ext.weights_ops.draw_panel(layout, {"name": "hi3dgen", "missing": ["rmbg"]})
    assert not layout.calls
    ext.weights_ops.draw_downloads(layout, ext.weights_ops.preference_groups())
    assert [c[1]["idname"] for c in layout.calls if c[0] == "operator"] == ["hi3dgen.download_weights"] * 2
    assert ("label", {"text": "Weights ready: rmbg", "icon": "CHECKMARK"}) in layout.calls


def test_cancel_keeps_the_part_and_a_later_press_resumes(ext, hub):  # noqa: F811
    server, repo, folder = hub
    server.state.stall.add(f"{RMBG}/model.safetensors")
    ext.weights_ops.start(bpy.context, ["segmenter"])
    part = folder / "model.safetensors.part"
    assert server.state.stall_reached.wait(60)
    deadline = time.monotonic() + 60
    while not (part.is_file() and part.stat().st_size > 0):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    layout = _Layout()
    ext.weights_ops.draw_downloads(layout, ext.weights_ops.preference_groups())
    bar = [c[1] for c in layout.calls if c[0] == "progress"]
    assert len(bar) == 1 and 0.0 <= bar[0]["factor"] < 1.0 and "of 2.0 MB" in bar[0]["text"]
    assert ("operator", {"idname": "hi3dgen.cancel_download", "text": "", "icon": "CANCEL"}) in layout.calls
    assert bpy.ops.hi3dgen.cancel_download() == {"FINISHED"}
    server.state.stall_release.set()
    error = ext.weights_ops._State.last_error
    assert error is not None and error.code == "cancelled" and not ext.weights_ops.is_downloading()
    kept = part.stat().st_size
    assert 0 < kept < 2_000_000

    assert bpy.ops.hi3dgen.download_weights(models="segmenter") == {"FINISHED"}
    assert server.file_requests("model.safetensors")[-1] == f"bytes={kept}-"
    assert _sha(folder / "model.safetensors") == _sha(repo / "model.safetensors") and not part.exists()


def test_online_access_off_refuses_the_internet_but_not_this_machine(ext, hub, monkeypatch):  # noqa: F811
    assert not bpy.app.online_access  # the bpy module starts offline
    assert ext.weights_ops.online_problem() == ""  # HF_ENDPOINT is 127.0.0.1 here
    monkeypatch.setenv("HF_ENDPOINT", "https://huggingface.co")
    with pytest.raises(RuntimeError, match="Online access is off"):
        bpy.ops.hi3dgen.download_weights(models="segmenter")
    assert not hub[0].state.requests


def test_the_dialog_shows_sizes_and_licences_before_anything_is_fetched(ext, hub):  # noqa: F811
    """``invoke`` asks the backend for the plan, then opens the confirmation; ``draw`` lists the plan."""
    server, repo, folder = hub
    cls = ext.weights_ops.HI3DGEN_OT_download_weights
    reports: list[tuple[set, str]] = []
    dialogs: list[dict[str, Any]] = []
    layout = _Layout()
    op = type("Op", (), {"models": "segmenter", "_names": cls._names, "layout": layout,
                         "report": lambda self, kind, text: reports.append((kind, text))})()
    wm = type("WM", (), {"invoke_props_dialog": lambda self, o, **kw: dialogs.append(kw) or {"RUNNING_MODAL"}})()
    context = type("Ctx", (), {"window_manager": wm, "preferences": bpy.context.preferences})()
    assert cls.invoke(op, context, None) == {"RUNNING_MODAL"} and not reports
    assert dialogs == [{"width": 560, "title": "Download Weights", "confirm_text": "Download"}]
    cls.draw(op, context)
    lines = [kw["text"] for name, kw in layout.calls if name == "label"]
    assert lines[0] == ("rmbg (briaai/RMBG-1.4): 2.0 MB; licence bria-rmbg-1.4 (non-commercial use; gated: "
                        "accept the terms on the model page and set HF_TOKEN)")
    assert lines[1] == f"Download 2.0 MB into {folder.parent}" and "free there" in lines[2]
    assert not server.state.requests and not folder.exists()  # only the listing was read
