"""NiRNE / YOSO normal estimator: loading the release layout, the one-step pass, masks. CPU, tiny configs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from backend.devices import Placement  # noqa: E402
from backend.errors import BadInput, WeightsInvalid, WeightsMissing  # noqa: E402
from backend.nirne import preprocess as prep  # noqa: E402
from backend.nirne.loading import build_component, load_nirne, rename_legacy_keys  # noqa: E402
from backend.nirne.pipeline import NirneEstimator, estimate_normals, predict  # noqa: E402
from backend.nirne.segmentation import foreground_mask  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "yoso_configs"
FP16_NAME = "diffusion_pytorch_model.fp16.safetensors"
CPU32 = Placement(torch.device("cpu"), torch.float32)

_BLOCKS = {"block_out_channels": [32, 64], "layers_per_block": 1, "norm_num_groups": 8,
           "cross_attention_dim": 16, "attention_head_dim": [2, 4], "use_linear_projection": True}
TINY = {
    "unet": {**_BLOCKS, "in_channels": 4, "out_channels": 4, "sample_size": 8,
             "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
             "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"]},
    "controlnet": {**_BLOCKS, "in_channels": 4, "conditioning_embedding_out_channels": [8, 16],
                   "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"]},
    "vae": {"block_out_channels": [16, 32], "layers_per_block": 1, "norm_num_groups": 8, "latent_channels": 4,
            "in_channels": 3, "out_channels": 3, "sample_size": 32,
            "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
            "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"]},
}
CLASS_NAMES = {"unet": "UNet2DConditionModel", "vae": "AutoencoderKL", "controlnet": "ControlNetVAEModel"}


def write_release(folder: Path, seed: int = 0) -> Path:
    """A tiny yoso-normal folder in the exact release layout, random weights saved as the fp16 variant."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    index = json.loads((FIXTURES / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps(index))
    torch.manual_seed(seed)
    for name, config in TINY.items():
        (folder / name).mkdir(exist_ok=True)
        (folder / name / "config.json").write_text(json.dumps({"_class_name": CLASS_NAMES[name], **config}))
        model = build_component(name, config, device="cpu")
        with torch.no_grad():  # the zero-convs start at zero; give every tensor a visible value
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.02)
        state = {k: v.to(torch.float16).contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(folder / name / FP16_NAME))
    remote_code = "raise SystemExit('remote code must never run')\n"
    (folder / "controlnet" / "controlnetvae.py").write_text(remote_code)
    return folder


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_release(tmp_path_factory.mktemp("yoso") / "yoso-normal-v1-8-1")


@pytest.fixture(scope="module")
def estimator(release: Path) -> NirneEstimator:
    return NirneEstimator.load(release, CPU32, processing_resolution=64)


def _object_image(h: int = 37, w: int = 50) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    rgba = np.zeros((h, w, 4), np.float32)
    rgba[..., :3] = rng.random((h, w, 3))
    yy, xx = np.mgrid[:h, :w]
    mask = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (min(h, w) / 3) ** 2
    rgba[..., 3] = mask
    return rgba, mask


def test_release_layout_loads_and_estimates_unit_normals(estimator: NirneEstimator) -> None:
    rgba, mask = _object_image()
    normals = estimator(rgba, mask)
    assert normals.shape == (37, 50, 3) and normals.dtype == np.float32
    lengths = np.linalg.norm(normals, axis=-1)
    np.testing.assert_allclose(lengths[mask], 1.0, atol=1e-4)
    np.testing.assert_array_equal(normals[~mask], np.broadcast_to([0.0, 0.0, 1.0], normals[~mask].shape))
    assert normals[mask].std(axis=0).max() > 1e-3  # not a constant map


def test_loaded_models_are_eval_fp32_with_fp16_weights_upcast(estimator: NirneEstimator) -> None:
    for net in (estimator.models.unet, estimator.models.vae, estimator.models.controlnet):
        assert not net.training
        assert {p.dtype for p in net.parameters()} == {torch.float32}
        assert not any(p.is_meta for p in net.parameters())


def test_rgb_input_and_no_mask(estimator: NirneEstimator) -> None:
    rgba, _ = _object_image(20, 24)
    normals = estimate_normals(estimator.models, rgba[..., :3], None, processing_resolution=64)
    assert normals.shape == (20, 24, 3)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=-1), 1.0, atol=1e-4)


def test_bad_image_shape_is_bad_input(estimator: NirneEstimator) -> None:
    with pytest.raises(BadInput):
        estimator(np.zeros((8, 8), np.float32), None)


def test_controlnet_returns_raw_block_outputs(estimator: NirneEstimator) -> None:
    net = estimator.models.controlnet
    latent = torch.randn(1, 4, 8, 8)
    context = torch.zeros(1, 257, 16)
    with torch.no_grad():
        down, mid = net(latent, 0, encoder_hidden_states=context)
        first = net.conv_in(latent)
    assert len(down) == len(net.controlnet_down_blocks)  # conv_in + per block: resnets (+ downsampler)
    torch.testing.assert_close(down[0], first)  # no conditioning embedding, no zero-conv
    assert mid.shape == (1, 64, 4, 4)


def test_zero_context_shortcut_is_exact(release: Path, estimator: NirneEstimator) -> None:
    plain = load_nirne(release, "cpu", torch.float32, zero_context_shortcut=False)
    pixels = torch.rand(1, 3, 32, 40) * 2 - 1
    fast = predict(estimator.models, pixels)
    slow = predict(plain, pixels)
    torch.testing.assert_close(fast, slow, atol=2e-5, rtol=1e-4)
    assert type(estimator.models.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2.processor
                ).__name__ == "ZeroContextCrossAttnProcessor"


def test_plain_file_name_is_the_fallback(tmp_path: Path) -> None:
    folder = write_release(tmp_path / "yoso", seed=1)
    (folder / "vae" / FP16_NAME).rename(folder / "vae" / "diffusion_pytorch_model.safetensors")
    models = load_nirne(folder, "cpu", torch.float32)
    assert models.vae.config.latent_channels == 4


def test_controlnet_without_unused_modules_loads(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    folder = write_release(tmp_path / "yoso", seed=2)
    path = folder / "controlnet" / FP16_NAME
    state = {k: v for k, v in load_file(str(path)).items() if not k.startswith("controlnet_")}
    save_file(state, str(path))
    models = load_nirne(folder, "cpu", torch.float32)
    assert not any(p.is_meta for p in models.controlnet.parameters())


def test_missing_files_are_all_listed(tmp_path: Path) -> None:
    folder = write_release(tmp_path / "yoso", seed=3)
    (folder / "vae" / FP16_NAME).unlink()
    (folder / "unet" / "config.json").unlink()
    with pytest.raises(WeightsMissing) as info:
        load_nirne(folder, "cpu", torch.float32)
    assert "vae/diffusion_pytorch_model.fp16.safetensors" in info.value.message
    assert "unet/config.json" in info.value.message
    with pytest.raises(WeightsMissing):
        load_nirne(tmp_path / "nowhere", "cpu", torch.float32)


def test_corrupt_and_mismatched_weights_are_invalid(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    folder = write_release(tmp_path / "yoso", seed=4)
    good = folder / "unet" / FP16_NAME
    backup = tmp_path / "unet.safetensors"
    shutil.copy(good, backup)
    good.write_bytes(b"not a safetensors file at all")
    with pytest.raises(WeightsInvalid):
        load_nirne(folder, "cpu", torch.float32)
    state = load_file(str(backup))
    state["conv_in.weight"] = torch.zeros(1, 1, 1, 1, dtype=torch.float16)
    save_file(state, str(good))
    with pytest.raises(WeightsInvalid, match="conv_in.weight"):
        load_nirne(folder, "cpu", torch.float32)
    (folder / "vae" / "config.json").write_text("{ broken")
    with pytest.raises(WeightsInvalid):
        load_nirne(folder, "cpu", torch.float32)


def test_model_index_must_list_the_components(tmp_path: Path) -> None:
    folder = write_release(tmp_path / "yoso", seed=5)
    (folder / "model_index.json").write_text(json.dumps({"unet": ["diffusers", "UNet2DConditionModel"]}))
    with pytest.raises(WeightsInvalid, match="controlnet"):
        load_nirne(folder, "cpu", torch.float32)


def test_release_configs_give_the_release_parameter_counts() -> None:
    """Meta-device trees from the published configs: sizes match the fp16 files (1.73 GB, 728 MB, 167 MB)."""
    expected = {"unet": (865_910_724, 686), "controlnet": (364_228_240, 340), "vae": (83_653_863, 248)}
    for name, (params, keys) in expected.items():
        config = json.loads((FIXTURES / name / "config.json").read_text())
        model = build_component(name, config)  # meta: no memory, no init
        assert next(model.parameters()).is_meta
        assert sum(p.numel() for p in model.parameters()) == params, name
        assert len(model.state_dict()) == keys, name


def test_legacy_vae_attention_keys_are_renamed() -> None:
    state = {"encoder.mid_block.attentions.0.query.weight": torch.zeros(1),
             "encoder.mid_block.attentions.0.proj_attn.bias": torch.zeros(1),
             "decoder.conv_in.weight": torch.zeros(1)}
    assert set(rename_legacy_keys(state)) == {"encoder.mid_block.attentions.0.to_q.weight",
                                              "encoder.mid_block.attentions.0.to_out.0.bias",
                                              "decoder.conv_in.weight"}


def test_processing_size_and_padding() -> None:
    assert prep.processing_size(1024, 1024, 768) == (768, 768)
    assert prep.processing_size(600, 1000, 768) == (448, 768)  # 460.8 rounds to 7 x 64
    x = torch.arange(2 * 3 * 13 * 21, dtype=torch.float32).reshape(2, 3, 13, 21)
    padded, padding = prep.pad_to_multiple(x, 8)
    assert padded.shape[2:] == (16, 24) and padding == (3, 3)
    torch.testing.assert_close(padded[:, :, 15, 23], x[:, :, 12, 20])  # replicate
    torch.testing.assert_close(prep.unpad(padded, padding), x)


def test_composite_over_white() -> None:
    rgba = np.array([[[0.2, 0.4, 0.6, 0.0], [0.2, 0.4, 0.6, 1.0], [0.0, 0.0, 0.0, 0.5]]], np.float32)
    out = prep.composite_over_white(rgba)
    np.testing.assert_allclose(out, [[[1, 1, 1], [0.2, 0.4, 0.6], [0.5, 0.5, 0.5]]], atol=1e-6)


def test_network_input_range_and_shape() -> None:
    rgb = np.random.default_rng(1).random((30, 50, 3)).astype(np.float32)
    x, padding = prep.to_network_input(rgb, (64, 128))
    assert x.shape == (1, 3, 64, 128) and padding == (0, 0)
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0


def _lanczos_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] weights of Pillow's LANCZOS, written out: 3 lobes, widened by the shrink factor."""
    scale = n_in / n_out
    stretch = max(scale, 1.0)
    support = 3.0 * stretch
    weights = np.zeros((n_out, n_in))
    for i in range(n_out):
        centre = (i + 0.5) * scale
        lo, hi = max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), n_in)
        t = (np.arange(lo, hi) - centre + 0.5) / stretch
        weights[i, lo:hi] = np.where(np.abs(t) < 3.0, np.sinc(t) * np.sinc(t / 3.0), 0.0)
        weights[i] /= weights[i].sum()
    return weights


def _stripes_and_checks(h: int, w: int) -> torch.Tensor:
    """Unit normals [1, 3, H, W] tilting on a 1-pixel checkerboard and a 2.5-pixel stripe."""
    y, x = np.mgrid[0:h, 0:w]
    n = np.stack([0.8 * ((x + y) % 2 * 2 - 1), 0.6 * np.cos(2 * np.pi * y / 2.5), np.ones((h, w))], 0)
    return prep.normalize_channels(torch.from_numpy(n[None]).float())


@pytest.mark.parametrize("src, dst", [((96, 80), (40, 33)), ((48, 40), (100, 70))], ids=["shrink", "grow"])
def test_resize_back_is_the_release_lanczos_in_float(src, dst) -> None:
    x = _stripes_and_checks(*src)
    wy, wx = _lanczos_matrix(src[0], dst[0]), _lanczos_matrix(src[1], dst[1])
    expected = prep.normalize_channels(torch.from_numpy(wy @ x[0].double().numpy() @ wx.T)[None].float())
    out = prep.resize_normals(x, dst)
    assert out.shape == (1, 3, *dst)
    torch.testing.assert_close(out, expected, atol=1e-3, rtol=0)
    bilinear = prep.normalize_channels(torch.nn.functional.interpolate(x, size=dst, mode="bilinear"))
    assert float((bilinear - expected).abs().max()) > 0.05  # the pattern is one that aliases


def test_foreground_mask_sources() -> None:
    rgba, mask = _object_image()
    np.testing.assert_array_equal(foreground_mask(rgba), mask)
    plain = np.ones((40, 40, 3), np.float32)
    plain[10:30, 12:28] = (0.8, 0.1, 0.1)
    estimated = foreground_mask(plain)
    assert estimated[20, 20] and not estimated[2, 2] and estimated.sum() == 20 * 16
    learned = foreground_mask(plain, matting=lambda rgb: rgb[..., 1] < 0.5)
    np.testing.assert_array_equal(learned, estimated)
    opaque = np.concatenate([plain, np.ones((40, 40, 1), np.float32)], axis=-1)
    np.testing.assert_array_equal(foreground_mask(opaque), estimated)  # opaque alpha carries no mask
    with pytest.raises(BadInput):
        foreground_mask(plain, method="learned")
    with pytest.raises(BadInput):
        foreground_mask(plain, method="alpha")
    with pytest.raises(BadInput):
        foreground_mask(plain, method="magic")
