"""The weights layer against local folders only: resolution order, clear errors, no network, no pickle."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from backend import weights
from backend.errors import WeightsInvalid, WeightsMissing
from backend.settings import BackendSettings


def _fake_dinov2(folder):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"hidden_size": 8}))
    save_file({"w": torch.zeros(2)}, str(folder / "model.safetensors"))


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # an empty cache


def test_resolves_named_subfolder_of_weights_dir(tmp_path):
    _fake_dinov2(tmp_path / "dinov2")
    settings = BackendSettings(weights_dir=str(tmp_path))
    assert weights.resolve("dinov2", settings) == tmp_path / "dinov2"
    assert weights.status("dinov2", settings) == (True, [])


def test_weights_dir_may_be_the_model_folder_itself(tmp_path):
    _fake_dinov2(tmp_path / "here")
    assert weights.resolve("dinov2", BackendSettings(weights_dir=str(tmp_path / "here"))) == tmp_path / "here"


def test_missing_weights_name_files_and_the_fetch_command(tmp_path):
    (tmp_path / "dinov2").mkdir()
    (tmp_path / "dinov2" / "config.json").write_text("{}")
    with pytest.raises(WeightsMissing) as info:
        weights.resolve("dinov2", BackendSettings(weights_dir=str(tmp_path)))
    assert "model.safetensors" in info.value.message
    assert "python -m backend download dinov2" in info.value.hint
    assert weights.status("dinov2", BackendSettings(weights_dir=str(tmp_path)))[0] is False


def test_env_variable_sets_the_weights_dir(tmp_path, monkeypatch):
    _fake_dinov2(tmp_path / "dinov2")
    monkeypatch.setenv("HI3DGEN_WEIGHTS", str(tmp_path))
    assert weights.resolve("dinov2", BackendSettings.from_env()) == tmp_path / "dinov2"


def test_unknown_model():
    with pytest.raises(WeightsMissing, match="Unknown model"):
        weights.resolve("nope", BackendSettings())


def test_download_refused_without_consent(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("must not download")

    monkeypatch.setattr(weights, "_download", boom)
    with pytest.raises(WeightsMissing):
        weights.resolve("trellis-normal", BackendSettings(weights_dir=str(tmp_path), allow_download=False))


def test_load_safetensors_errors_name_the_file(tmp_path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(WeightsInvalid, match="broken.safetensors"):
        weights.load_safetensors(bad)
    with pytest.raises(WeightsInvalid, match="only .safetensors"):
        weights.load_safetensors(tmp_path / "model.bin")
    good = tmp_path / "ok.safetensors"
    save_file({"a": torch.ones(3)}, str(good))
    assert weights.load_safetensors(good)["a"].sum() == 3
