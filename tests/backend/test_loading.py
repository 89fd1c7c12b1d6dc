"""Release-layout folders load through the real loader; bad files fail with readable errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from backend.errors import WeightsInvalid, WeightsMissing
from backend.models.configs import VARIANTS, config_from_args, parse_release_json
from backend.models.dinov2 import convert_hf_state_dict, to_hf_state_dict
from backend.models.loading import (
    PIPELINE_NAMES,
    build_network,
    load_checkpoint,
    load_dinov2,
    load_network,
    read_pipeline_json,
)
from backend.models.testing import SLAT_MEAN, write_checkpoint, write_dinov2_folder, write_release_folder

DENSE = {"sparse_structure_flow_model": "tiny_ss_flow", "sparse_structure_decoder": "tiny_ss_dec"}


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("backend.nn.sparse_conv", reason="backend.nn.sparse_* not available yet")
    return write_release_folder(tmp_path_factory.mktemp("trellis-normal"), seed=7)


def _has_sparse() -> bool:
    try:
        import backend.nn.sparse_conv  # noqa: F401
    except ImportError:
        return False
    return True


def test_pipeline_json(release: Path) -> None:
    p = read_pipeline_json(release)
    assert set(p.models) == set(PIPELINE_NAMES)
    assert p.models["sparse_structure_flow_model"] == "ckpts/tiny_ss_flow"
    assert p.slat_mean == SLAT_MEAN and len(p.slat_std) == 8
    assert p.sparse_structure_sampler.steps == 25 and p.slat_sampler.cfg_interval == (0.5, 1.0)
    assert p.slat_sampler.rescale_t == 3.0 and p.image_cond_model == "dinov2_vitl14_reg"


def test_dense_networks_load_and_run(release: Path) -> None:
    flow = load_network(release, "sparse_structure_flow_model")
    decoder = load_network(release, "sparse_structure_decoder")
    stored = load_file(str(release / "ckpts" / "tiny_ss_flow.safetensors"))
    assert all(torch.equal(v, stored[k]) for k, v in flow.state_dict().items())
    assert not any(p.requires_grad for p in flow.parameters()) and not flow.training
    with torch.no_grad():
        v = flow(torch.randn(1, 8, 16, 16, 16), torch.tensor([1000.0]), torch.randn(1, 1374, 32))
        logits = decoder(v)
    assert v.shape == (1, 8, 16, 16, 16) and logits.shape == (1, 1, 64, 64, 64)


def test_occupancy_tuning_keeps_structure_small(release: Path) -> None:
    decoder = load_network(release, "sparse_structure_decoder")
    with torch.no_grad():
        occupied = int((decoder(torch.randn(1, 8, 16, 16, 16)) > 0).sum())
    assert 0 < occupied < 0.02 * 64**3


@pytest.mark.skipif(not _has_sparse(), reason="backend.nn.sparse_* not available")
def test_sparse_networks_load(release: Path) -> None:
    for name in ("slat_flow_model", "slat_decoder_mesh"):
        model = load_network(release, name)
        assert sum(p.numel() for p in model.parameters()) > 0
        assert not any(p.is_meta for p in model.parameters())


def test_compute_dtype_on_load(release: Path) -> None:
    flow = load_network(release, "sparse_structure_flow_model", dtype=torch.bfloat16)
    assert flow.blocks[1].mlp.mlp[0].weight.dtype == torch.bfloat16
    assert flow.blocks[1].norm2.weight.dtype == torch.float32
    assert flow.out_layer.weight.dtype == torch.float32 and flow.pos_emb.dtype == torch.float32


def _copy_ckpt(release: Path, tmp: Path, variant: str) -> Path:
    base = tmp / "ckpts" / variant
    base.parent.mkdir(parents=True, exist_ok=True)
    for ext in (".json", ".safetensors"):
        (base.parent / (variant + ext)).write_bytes((release / "ckpts" / (variant + ext)).read_bytes())
    return base


def test_truncated_file_names_the_file(release: Path, tmp_path: Path) -> None:
    base = _copy_ckpt(release, tmp_path, "tiny_ss_dec")
    path = base.with_name("tiny_ss_dec.safetensors")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(WeightsInvalid, match="tiny_ss_dec.safetensors"):
        load_checkpoint(base)


def test_garbage_file_names_the_file(release: Path, tmp_path: Path) -> None:
    base = _copy_ckpt(release, tmp_path, "tiny_ss_dec")
    base.with_name("tiny_ss_dec.safetensors").write_bytes(b"\x00not a safetensors file" * 7)
    with pytest.raises(WeightsInvalid, match="tiny_ss_dec.safetensors"):
        load_checkpoint(base)


def test_wrong_shape_names_file_and_key(release: Path, tmp_path: Path) -> None:
    base = _copy_ckpt(release, tmp_path, "tiny_ss_dec")
    path = base.with_name("tiny_ss_dec.safetensors")
    state = load_file(str(path))
    state["blocks.0.conv1.weight"] = torch.zeros(16, 16, 3, 3, 2)
    save_file(state, str(path))
    with pytest.raises(WeightsInvalid) as err:
        load_checkpoint(base)
    assert "tiny_ss_dec.safetensors" in err.value.message
    assert (
        "'blocks.0.conv1.weight' expected [16, 16, 3, 3, 3], file has [16, 16, 3, 3, 2]" in err.value.message
    )


def test_missing_and_unexpected_keys(release: Path, tmp_path: Path) -> None:
    base = _copy_ckpt(release, tmp_path, "tiny_ss_dec")
    path = base.with_name("tiny_ss_dec.safetensors")
    state = load_file(str(path))
    del state["out_layer.2.bias"]
    state["extra.weight"] = torch.zeros(1)
    save_file(state, str(path))
    with pytest.raises(
        WeightsInvalid,
        match=r"1 missing key\(s\) \(first: out_layer.2.bias\); "
        r"1 unexpected key\(s\) \(first: extra.weight\)",
    ):
        load_checkpoint(base)


def test_missing_files_are_named(release: Path, tmp_path: Path) -> None:
    with pytest.raises(WeightsMissing, match="pipeline.json"):
        read_pipeline_json(tmp_path)
    (tmp_path / "pipeline.json").write_bytes((release / "pipeline.json").read_bytes())
    _copy_ckpt(release, tmp_path, "tiny_ss_flow")
    with pytest.raises(WeightsMissing) as err:
        load_network(tmp_path, "sparse_structure_flow_model")
    assert (
        "ckpts/tiny_ss_dec.safetensors" in err.value.message
        and "ckpts/tiny_slat_flow.json" in err.value.message
    )
    assert "tiny_ss_flow" not in err.value.message


def test_malformed_pipeline_json(tmp_path: Path) -> None:
    (tmp_path / "pipeline.json").write_text('{"args": {"models": {}}}')
    with pytest.raises(WeightsInvalid, match="pipeline.json"):
        read_pipeline_json(tmp_path)


def test_release_json_parsing(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    args = {
        "resolution": 16,
        "in_channels": 8,
        "out_channels": 8,
        "model_channels": 64,
        "cond_channels": 32,
        "num_blocks": 1,
        "num_heads": 4,
        "patch_size": 1,
        "use_fp16": True,
        "use_checkpoint": False,
    }
    path.write_text(json.dumps({"name": "SparseStructureFlowModel", "args": args}))
    config = parse_release_json(path)
    assert config.extra == {"use_checkpoint": False} and config.use_fp16 and config.heads == 4
    with pytest.raises(ValueError, match="pe_mode='rope'"):
        config_from_args("SparseStructureFlowModel", {**args, "pe_mode": "rope"})
    with pytest.raises(ValueError, match="unknown network class"):
        config_from_args("Nope", args)
    base = tmp_path / "bad"
    write_checkpoint(base, VARIANTS["tiny_ss_dec"])
    base.with_name("bad.json").write_text(json.dumps({"name": "SparseStructureDecoder", "args": {}}))
    with pytest.raises(WeightsInvalid, match="bad.json"):
        load_checkpoint(base)


# ---- DINOv2 (Hugging Face naming) ---------------------------------------------------------------------


def test_dinov2_converter_roundtrip() -> None:
    model = build_network(VARIANTS["dinov2_vitl14_reg"], "meta")
    ours = model.state_dict()
    hf = to_hf_state_dict(ours)
    assert "encoder.layer.23.attention.attention.query.weight" in hf
    assert hf["embeddings.position_embeddings"].shape == (1, 1370, 1024)
    assert hf["encoder.layer.0.layer_scale1.lambda1"].shape == (1024,)
    back = convert_hf_state_dict(hf)
    assert {k: tuple(v.shape) for k, v in back.items()} == {k: tuple(v.shape) for k, v in ours.items()}
    with pytest.raises(KeyError, match="pooler.dense.weight"):
        convert_hf_state_dict({**hf, "pooler.dense.weight": torch.zeros(1)})


def test_dinov2_converter_concatenates_qkv_in_order() -> None:
    hf = {
        f"encoder.layer.0.attention.attention.{n}.{kind}": torch.full((2, 3) if kind == "weight" else (2,), i)
        for i, n in enumerate(("query", "key", "value"))
        for kind in ("weight", "bias")
    }
    out = convert_hf_state_dict(hf)
    assert out["blocks.0.attn.qkv.weight"][:, 0].tolist() == [0, 0, 1, 1, 2, 2]
    assert out["blocks.0.attn.qkv.bias"].tolist() == [0, 0, 1, 1, 2, 2]


def test_dinov2_folder_loads(tmp_path: Path) -> None:
    folder = write_dinov2_folder(tmp_path / "dinov2", seed=3)
    model = load_dinov2(folder)
    assert model.config.embed_dim == 32 and model.pos_embed.shape == (1, 1370, 32)
    with torch.no_grad():
        cond = model(torch.randn(1, 3, 518, 518))
    assert cond.shape == (1, 1374, 32)
    state = load_file(str(folder / "model.safetensors"))
    state["encoder.layer.1.mlp.fc1.weight"] = torch.zeros(3, 3)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(WeightsInvalid, match="model.safetensors.*'blocks.1.mlp.fc1.weight'"):
        load_dinov2(folder)
