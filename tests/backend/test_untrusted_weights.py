"""Weights folders are untrusted: dtypes, config bounds, paths inside the folder, bounded look-ups, offline."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from backend import weights
from backend.errors import WeightsInvalid, WeightsMissing
from backend.models import loading
from backend.models.configs import VARIANTS, release_json
from backend.models.loading import check_inside, load_checkpoint, load_dinov2, load_network, read_pipeline_json
from backend.models.testing import SLAT_MEAN, SLAT_STD, write_checkpoint, write_dinov2_folder, write_release_folder
from backend.settings import BackendSettings

# ------------------------------------------------------------------------------------------------ dtypes


def test_a_right_shaped_int8_checkpoint_is_refused(tmp_path):
    base = tmp_path / "ckpts" / "tiny_ss_dec"
    write_checkpoint(base, VARIANTS["tiny_ss_dec"])
    path = base.with_name("tiny_ss_dec.safetensors")
    state = load_file(str(path))
    key = sorted(state)[3]
    state[key] = torch.zeros(state[key].shape, dtype=torch.int8)
    save_file(state, str(path))
    with pytest.raises(WeightsInvalid) as info:
        load_checkpoint(base)
    message = info.value.message
    assert str(path) in message and f"'{key}'" in message and "is int8" in message
    assert "float32, float16, bfloat16" in message and info.value.hint


def test_half_precision_checkpoints_still_load(tmp_path):
    base = tmp_path / "tiny_ss_dec"
    write_checkpoint(base, VARIANTS["tiny_ss_dec"])
    path = base.with_name("tiny_ss_dec.safetensors")
    save_file({k: v.to(torch.bfloat16) for k, v in load_file(str(path)).items()}, str(path))
    assert load_checkpoint(base) is not None


def test_int8_dinov2_and_matting_weights_are_refused(tmp_path):
    folder = write_dinov2_folder(tmp_path / "dinov2")
    state = load_file(str(folder / "model.safetensors"))
    key = next(k for k in sorted(state) if k.endswith("weight"))
    state[key] = torch.ones(state[key].shape, dtype=torch.int8)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(WeightsInvalid, match=f"'{key}' is int8"):
        load_dinov2(folder)
    net = nn.Linear(3, 2)
    save_file({"weight": torch.zeros(2, 3, dtype=torch.int32), "bias": torch.zeros(2)}, str(tmp_path / "m.safetensors"))
    with pytest.raises(WeightsInvalid, match="'weight' is int32"):
        loading.load_into(net.to("meta"), tmp_path / "m.safetensors")


def test_int8_nirne_weights_are_refused(tmp_path):
    from backend.nirne.loading import check_state

    model = nn.Linear(3, 2)
    state = {"weight": torch.zeros(2, 3, dtype=torch.int8), "bias": torch.zeros(2, dtype=torch.float16)}
    with pytest.raises(WeightsInvalid, match=r"x.safetensors: tensor 'weight' is int8, expected float32"):
        check_state(model, state, tmp_path / "x.safetensors")
    check_state(model, {"weight": torch.zeros(2, 3, dtype=torch.float16), "bias": torch.zeros(2)}, tmp_path)


# ------------------------------------------------------------------------------------------------ configs


SS_DEC = release_json(VARIANTS["tiny_ss_dec"])
SS_FLOW = release_json(VARIANTS["tiny_ss_flow"])


@pytest.mark.parametrize("doc, words", [
    ({**SS_FLOW, "args": {**SS_FLOW["args"], "num_blocks": 10**9}}, "num_blocks=1000000000 is outside"),
    ({**SS_FLOW, "args": {**SS_FLOW["args"], "model_channels": "32"}}, "wrong type"),
    ({**SS_FLOW, "args": {**SS_FLOW["args"], "num_heads": 0}}, "num_heads=0"),
    ({**SS_FLOW, "args": {**SS_FLOW["args"], "num_heads": 3}}, "cannot be split into 3 attention heads"),
    ({**SS_FLOW, "args": {**SS_FLOW["args"], "num_heads": None, "num_head_channels": 64}}, "into 0 attention"),
    ({**SS_FLOW, "args": {**SS_FLOW["args"], "patch_size": 0}}, "patch_size=0"),
    ({**SS_FLOW, "args": {**SS_FLOW["args"], "use_fp16": "yes"}}, "wrong type"),
    ({**SS_DEC, "args": {**SS_DEC["args"], "channels": [16, -8, 8]}}, "outside"),
    ({**SS_DEC, "args": {**SS_DEC["args"], "channels": [8] * 100}}, "wrong type"),
    ({**SS_DEC, "args": {**SS_DEC["args"], "num_res_blocks": 1.5}}, "wrong type"),
    ({"name": "SparseStructureDecoder", "args": ["not", "an", "object"]}, "expected"),
])
def test_bad_network_configs_are_refused_before_building(tmp_path, monkeypatch, doc, words):
    base = tmp_path / "net"
    write_checkpoint(base, VARIANTS["tiny_ss_dec"])
    base.with_name("net.json").write_text(json.dumps(doc))
    monkeypatch.setattr(loading, "build_network", lambda *a: pytest.fail("a module was built"))
    with pytest.raises(WeightsInvalid, match=words) as info:
        load_checkpoint(base)
    assert "net.json" in info.value.message


def test_nan_and_huge_config_files_are_refused(tmp_path):
    base = tmp_path / "net"
    write_checkpoint(base, VARIANTS["tiny_ss_flow"])
    text = json.dumps(SS_FLOW).replace('"mlp_ratio": 4', '"mlp_ratio": NaN')
    base.with_name("net.json").write_text(text)
    with pytest.raises(WeightsInvalid, match="NaN"):
        load_checkpoint(base)
    base.with_name("net.json").write_text(json.dumps(SS_FLOW) + " " * (2 << 20))
    with pytest.raises(WeightsInvalid, match="at most"):
        load_checkpoint(base)


def test_bad_dinov2_config_is_refused(tmp_path, monkeypatch):
    folder = write_dinov2_folder(tmp_path / "dinov2")
    config = json.loads((folder / "config.json").read_text())
    monkeypatch.setattr(loading, "build_network", lambda *a: pytest.fail("a module was built"))
    for bad in ({"num_hidden_layers": 10**9}, {"num_attention_heads": 5}, {"hidden_size": 32.5}):
        (folder / "config.json").write_text(json.dumps({**config, **bad}))
        with pytest.raises(WeightsInvalid, match="config.json"):
            load_dinov2(folder)


def test_bad_nirne_configs_are_refused():
    from backend.nirne.loading import check_config

    fine = json.loads((Path(__file__).parents[1] / "fixtures" / "yoso_configs" / "unet" / "config.json").read_text())
    check_config(fine, Path("unet/config.json"))
    for bad, words in (({"layers_per_block": 10**6}, "layers_per_block"), ({"block_out_channels": [320, 100]},
                       "multiples of norm_num_groups"), ({"sample_size": 10**12}, "beyond"),
                       ({"norm_eps": float("inf")}, "finite"), ({"extra": {"nested": 1}}, "not a supported")):
        with pytest.raises(WeightsInvalid, match=words):
            check_config({**fine, **bad}, Path("unet/config.json"))


# ------------------------------------------------------------------------------------------ pipeline.json


def pipeline_doc(**changes: object) -> dict:
    models = {n: f"ckpts/{n}" for n in loading.PIPELINE_NAMES}
    args = {"models": models, "slat_normalization": {"mean": list(SLAT_MEAN), "std": list(SLAT_STD)},
            "slat_sampler": {"params": {"steps": 25, "cfg_interval": [0.5, 1.0], "rescale_t": 3.0}}}
    args.update(changes)
    return {"name": "TrellisImageTo3DPipeline", "args": args}


def bad_model_path(path: object) -> dict:
    return pipeline_doc(models={**{n: f"ckpts/{n}" for n in loading.PIPELINE_NAMES}, "slat_flow_model": path})


@pytest.mark.parametrize("doc, words", [
    (bad_model_path("../../outside/slat"), "not a path inside"),
    (bad_model_path("/etc/hi3dgen/slat"), "not a path inside"),
    (bad_model_path("ckpts\\..\\..\\slat"), "not a path inside"),
    (bad_model_path("C:/models/slat"), "not a path inside"),
    (bad_model_path(["ckpts/x"]), "not a path inside"),
    (pipeline_doc(slat_normalization={"mean": [0.0] * 7, "std": [1.0] * 8}), "8 numbers"),
    (pipeline_doc(slat_normalization={"mean": [0.0] * 8, "std": [0.0] * 8}), "outside"),
    (pipeline_doc(slat_sampler={"params": {"steps": 10**9}}), "steps"),
    (pipeline_doc(slat_sampler={"params": {"cfg_interval": [0.9, 0.1]}}), "not increasing"),
    (pipeline_doc(slat_sampler={"params": {"rescale_t": "3"}}), "rescale_t"),
    (pipeline_doc(models="ckpts"), "models is not an object"),
])
def test_bad_pipeline_json_is_refused(tmp_path, doc, words):
    (tmp_path / "pipeline.json").write_text(json.dumps(doc))
    with pytest.raises(WeightsInvalid, match=words) as info:
        read_pipeline_json(tmp_path)
    assert "pipeline.json" in info.value.message
    assert not (tmp_path.parent / "outside").exists()


def test_nan_in_pipeline_json_is_refused(tmp_path):
    text = json.dumps(pipeline_doc()).replace("3.0", "NaN")
    (tmp_path / "pipeline.json").write_text(text)
    with pytest.raises(WeightsInvalid, match="NaN"):
        read_pipeline_json(tmp_path)
    (tmp_path / "pipeline.json").write_text(json.dumps(pipeline_doc()))
    assert read_pipeline_json(tmp_path).slat_sampler.rescale_t == 3.0


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return write_release_folder(tmp_path_factory.mktemp("trellis") / "trellis-normal", seed=3)


def test_checkpoint_links_out_of_the_folder_are_refused(release, tmp_path):
    folder = tmp_path / "trellis-normal"
    (folder / "ckpts").mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for item in (release / "ckpts").iterdir():
        (outside / item.name).write_bytes(item.read_bytes())
        os.symlink(outside / item.name, folder / "ckpts" / item.name)
    (folder / "pipeline.json").write_bytes((release / "pipeline.json").read_bytes())
    with pytest.raises(WeightsInvalid, match="outside the model folder"):
        load_network(folder, "sparse_structure_decoder")


def test_hugging_face_cache_links_are_followed(release, tmp_path):
    repo = tmp_path / "models--Stable-X--trellis-normal-v0-1"
    snapshot, blobs = repo / "snapshots" / "0123abc", repo / "blobs"
    (snapshot / "ckpts").mkdir(parents=True)
    blobs.mkdir()
    for n, item in enumerate(sorted((release / "ckpts").iterdir())):
        (blobs / f"blob{n}").write_bytes(item.read_bytes())
        os.symlink(Path("../../../blobs") / f"blob{n}", snapshot / "ckpts" / item.name)
    (snapshot / "pipeline.json").write_bytes((release / "pipeline.json").read_bytes())
    assert load_network(snapshot, "sparse_structure_decoder") is not None
    check_inside(snapshot, snapshot / "ckpts")
    with pytest.raises(WeightsInvalid):
        check_inside(snapshot, repo / "refs")


# --------------------------------------------------------------------------------------------- look-ups


@pytest.fixture
def offline(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read at import: set it where it is used too
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))


def test_looking_up_weights_never_walks_the_tree(tmp_path, monkeypatch, offline):
    deep = tmp_path / "home" / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (deep / "config.json").write_text("{}")
    (deep / "model.safetensors").write_bytes(b"")
    monkeypatch.setattr(Path, "rglob", lambda *a, **k: pytest.fail("rglob over a user folder"))
    monkeypatch.setattr(os, "walk", lambda *a, **k: pytest.fail("walk over a user folder"))
    settings = BackendSettings(weights_dir=str(tmp_path / "home"))
    assert weights.status("dinov2", settings) == (False, ["config.json", "model.safetensors"])


def test_a_folder_listing_is_bounded(tmp_path, monkeypatch):
    ckpts = tmp_path / "ckpts"
    ckpts.mkdir()
    for n in range(30):
        (ckpts / f"note{n:02}.txt").write_text("")
    (ckpts / "zz.json").write_text("{}")
    spec = weights.ModelSpec("x", "none/none", ("ckpts/*.json",), (), "")
    assert weights.missing_files(tmp_path, spec) == []
    monkeypatch.setattr(weights, "MAX_LISTING", 10)
    found = weights.missing_files(tmp_path, spec)
    assert found in ([], ["ckpts/*.json"])  # listing order is the file system's; what counts is the cap
    calls = []
    real = os.scandir

    class Counting:
        def __init__(self, path):
            self.inner = real(path)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.inner.close()

        def __iter__(self):
            for entry in self.inner:
                calls.append(entry.name)
                yield entry

    monkeypatch.setattr(weights.os, "scandir", Counting)
    weights.missing_files(tmp_path, weights.ModelSpec("x", "none/none", ("ckpts/*.bin",), (), ""))
    assert len(calls) == 10


# --------------------------------------------------------------------------------------------- downloads


def partly_filled(tmp_path: Path) -> BackendSettings:
    (tmp_path / "dinov2").mkdir()
    (tmp_path / "dinov2" / "config.json").write_text("{}")
    return BackendSettings(weights_dir=str(tmp_path), allow_download=True)


def test_offline_download_names_the_missing_files(tmp_path, offline):
    with pytest.raises(WeightsMissing) as info:
        weights.resolve("dinov2", partly_filled(tmp_path))  # the real Hub client, offline mode
    message = info.value.message
    assert "offline" in message and "missing: model.safetensors" in message and "layout" not in message
    assert "HF_HUB_OFFLINE" in info.value.hint


def test_a_dead_network_is_reported_as_offline(tmp_path, monkeypatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # nothing listens there: connection refused, as with no network
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(WeightsMissing, match=r"missing: model.safetensors.*offline") as info:
        weights.resolve("dinov2", partly_filled(tmp_path))
    assert "network" in info.value.hint and "layout" not in info.value.message
