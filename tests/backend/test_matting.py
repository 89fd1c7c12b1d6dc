"""The optional learned segmentation (IS-Net layout of RMBG-1.4): module tree, loading, use by the engines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from backend import protocol as P
from backend.errors import WeightsInvalid
from backend.models.isnet import IsNetConfig, IsNetSegmenter
from backend.models.testing import random_state
from backend.nirne.matting import LearnedMatting

from .conftest import BackendProcess, png_bytes

RELEASE_SHAPES = {  # a few published tensor shapes of briaai/RMBG-1.4 model.safetensors
    "conv_in.weight": (64, 3, 3, 3),
    "stage1.rebnconvin.conv_s1.weight": (64, 64, 3, 3),
    "stage1.rebnconv7.conv_s1.weight": (32, 32, 3, 3),
    "stage1.rebnconv6d.conv_s1.weight": (32, 64, 3, 3),
    "stage1.rebnconv1d.conv_s1.weight": (64, 64, 3, 3),
    "stage5.rebnconv4.bn_s1.running_var": (256,),
    "stage5d.rebnconvin.conv_s1.weight": (512, 1024, 3, 3),
    "stage1d.rebnconv1d.conv_s1.weight": (64, 32, 3, 3),
    "stage6.rebnconv3d.conv_s1.bias": (256,),
    "side1.weight": (1, 64, 3, 3),
    "side6.weight": (1, 512, 3, 3),
}


def test_release_module_tree():
    with torch.device("meta"):
        model = IsNetSegmenter(IsNetConfig())
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for key, shape in RELEASE_SHAPES.items():
        assert shapes[key] == shape, key
    assert not any("pool" in k for k in shapes)  # pooling holds no weights
    blocks = {k.split(".")[0] for k in shapes}
    assert blocks == {"conv_in", *(f"stage{i}" for i in range(1, 7)), *(f"stage{i}d" for i in range(1, 6)),
                      *(f"side{i}" for i in range(1, 7))}
    params = sum(v.numel() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k)
    assert 40e6 < params < 48e6  # about 44 M (a 176 MB float32 file)


def write_tiny_rmbg(folder: Path, width: float = 1 / 16) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model = IsNetSegmenter(IsNetConfig(width=width))
    state = random_state(model, torch.Generator().manual_seed(0))
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text('{"in_ch": 3, "out_ch": 1}')
    return folder


def test_tiny_weights_load_and_segment(tmp_path):
    matting = LearnedMatting.load(write_tiny_rmbg(tmp_path / "rmbg"), torch.device("cpu"))
    matting.side = 64  # the release runs at 1024; small here for speed
    alpha = matting(np.random.default_rng(0).random((37, 50, 3)).astype(np.float32))
    assert alpha.shape == (37, 50) and alpha.min() >= 0.0 and alpha.max() <= 1.0
    big = matting(np.random.default_rng(1).random((300, 200, 3)).astype(np.float32))  # shrunk first
    assert big.shape == (300, 200)


def test_wrong_file_is_a_clear_error(tmp_path):
    folder = tmp_path / "rmbg"
    folder.mkdir()
    save_file({"something.else": torch.zeros(3)}, str(folder / "model.safetensors"))
    with pytest.raises(WeightsInvalid, match="conv_in"):
        LearnedMatting.load(folder, torch.device("cpu"))


def test_engines_use_the_learned_mask_only_when_asked_or_present(tmp_path):
    photo = np.full((64, 64, 3), 200, np.uint8)
    photo[16:48, 20:44] = (40, 90, 160)  # plain background: the estimate works too
    image = np.frombuffer(png_bytes(photo), np.uint8)
    bare = BackendProcess(env={"HI3DGEN_WEIGHTS": str(tmp_path / "none")})
    try:
        bare.expect(P.Hello)
        bare.send(P.Generate(image_bytes=image, params={"resolution": 32, "mask": "learned"}), 1)
        err = bare.collect(1)["error"]
        assert err is not None and "download rmbg" in err.hint
        bare.send(P.Generate(image_bytes=image, params={"resolution": 32}), 2)  # auto: the estimate
        assert bare.collect(2)["done"] is not None
    finally:
        bare.close()
    write_tiny_rmbg(tmp_path / "weights" / "rmbg")
    learned = BackendProcess(env={"HI3DGEN_WEIGHTS": str(tmp_path / "weights")})
    try:
        learned.expect(P.Hello)
        learned.send(P.Generate(image_bytes=image, params={"resolution": 32, "mask": "learned"}), 3)
        out = learned.collect(3, timeout=120)
        assert out["error"] is None, out["error"]  # min-max normalised: random weights still mark pixels
        assert out["done"].stats["mask"]["source"] == "learned"
        learned.send(P.Generate(image_bytes=image, params={"resolution": 32}), 4)  # auto: present, so used
        assert learned.collect(4, timeout=120)["done"].stats["mask"]["source"] == "learned"
        learned.send(P.Generate(image_bytes=image, params={"resolution": 32, "mask": "estimate"}), 5)
        assert learned.collect(5, timeout=120)["done"].stats["mask"]["source"] == "estimated"
    finally:
        learned.close()


def test_damaged_optional_weights_fall_back_under_auto(tmp_path):
    folder = tmp_path / "weights" / "rmbg"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    photo = np.full((64, 64, 3), 200, np.uint8)
    photo[16:48, 20:44] = (40, 90, 160)
    image = np.frombuffer(png_bytes(photo), np.uint8)
    proc = BackendProcess(env={"HI3DGEN_WEIGHTS": str(tmp_path / "weights")})
    try:
        proc.expect(P.Hello)
        proc.send(P.Generate(image_bytes=image, params={"resolution": 32}), 1)
        assert proc.collect(1)["done"].stats["mask"]["source"] == "estimated"
        proc.send(P.Generate(image_bytes=image, params={"resolution": 32, "mask": "learned"}), 2)
        err = proc.collect(2)["error"]
        assert err is not None and "model.safetensors" in err.message
    finally:
        proc.close()

