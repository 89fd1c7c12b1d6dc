"""The five networks, built from the reference configs on the meta device, match the official keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.models.configs import VARIANTS, config_from_args
from backend.models.loading import build_network, expected_shapes

REFERENCE = Path(__file__).parent / "data" / "checkpoint_keys.json"  # copy of shared/reference
CLASS = {"image_cond_model": "DinoVisionTransformer"}  # the reference names the hub class with a note
NETWORKS = [
    "sparse_structure_flow_model",
    "sparse_structure_decoder",
    "slat_flow_model",
    "slat_decoder_mesh",
    "image_cond_model",
]
RELEASE_VARIANT = {
    "sparse_structure_flow_model": "ss_flow_normal_dit_L_16l8_fp16",
    "sparse_structure_decoder": "ss_dec_conv3d_16l8_fp16",
    "slat_flow_model": "slat_flow_normal_dit_L_64l8p2_fp16",
    "slat_decoder_mesh": "slat_dec_mesh_swin8_B_64l8m256c_fp16",
    "image_cond_model": "dinov2_vitl14_reg",
}


SPARSE = {"slat_flow_model", "slat_decoder_mesh"}


def _need_sparse_ops(name: str) -> None:
    if name in SPARSE:
        pytest.importorskip("backend.nn.sparse_conv", reason="backend.nn.sparse_* not available yet")


def _reference() -> dict:
    return json.loads(REFERENCE.read_text())


@pytest.mark.parametrize("name", NETWORKS)
def test_keys_and_shapes_match_reference(name: str) -> None:
    _need_sparse_ops(name)
    entry = _reference()[name]
    config = config_from_args(CLASS.get(name, entry["reference_class"]), entry["config"])
    shapes = expected_shapes(build_network(config, "meta"))
    want = {k: tuple(v) for k, v in entry["state_dict"].items()}
    assert sorted(set(want) - set(shapes)) == []  # missing in ours
    assert sorted(set(shapes) - set(want)) == []  # extra in ours
    assert {k: v for k, v in shapes.items() if want[k] != v} == {}
    assert len(shapes) == entry["num_tensors"]


@pytest.mark.parametrize("name", NETWORKS)
def test_variant_table_equals_reference_config(name: str) -> None:
    entry = _reference()[name]
    assert VARIANTS[RELEASE_VARIANT[name]] == config_from_args(
        CLASS.get(name, entry["reference_class"]), entry["config"]
    )


def test_total_tensor_count() -> None:
    ref = _reference()
    total = 0
    for name in NETWORKS:
        _need_sparse_ops(name)
        total += len(expected_shapes(build_network(VARIANTS[RELEASE_VARIANT[name]], "meta")))
    assert total == sum(ref[n]["num_tensors"] for n in NETWORKS) == 1553
