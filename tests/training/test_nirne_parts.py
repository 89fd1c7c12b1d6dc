"""NiRNE trainer parts, fast: config checks, the generated data's normals, the data reader's refusals,
noise injection, the loss, which parameters the two streams train, and the tiny denoiser prior."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from backend.nirne.controlnet import UNUSED_PREFIXES  # noqa: E402
from training.data import DataError  # noqa: E402
from training.nirne.config import NirneConfig, load_nirne_config, nirne_config_from_dict  # noqa: E402
from training.nirne.data import SampleFolder, load_sample  # noqa: E402
from training.nirne.init import write_tiny_init  # noqa: E402
from training.nirne.networks import DualStream, copy_encoder, fresh_networks, load_networks  # noqa: E402
from training.nirne.objective import (  # noqa: E402
    alphas_cumprod,
    angular_loss,
    draw_noise,
    inject_noise,
    regression_loss,
)
from training.nirne.prior import denoiser_error, image_latents, write_pretrained_init  # noqa: E402
from training.nirne.shapes import make_sample, normals_of, write_split  # noqa: E402


def test_config_defaults_and_refusals(tmp_path: Path) -> None:
    assert nirne_config_from_dict({}) == NirneConfig()
    config = nirne_config_from_dict({"train": {"steps_real": 3, "steps_synthetic": 2, "noise_t_max": 0}})
    assert config.train.steps == 5 and config.train.noise_t_max == 0
    for bad, words in [({"train": {"noise_t_max": 1000}}, "noise_t_max"),
                       ({"train": {"steps_real": 0, "steps_synthetic": 0}}, "at least 1"),
                       ({"train": {"lr": "fast"}}, "finite number"),
                       ({"train": {"export_dtype": "fp8"}}, "fp16, fp32"),
                       ({"model": {"preset": "huge"}}, "tiny"),
                       ({"train": {"stepz": 3}}, "unknown key"),
                       ({"decoder": {}}, "unknown table")]:
        with pytest.raises(ValueError, match=words):
            nirne_config_from_dict(bad)
    path = tmp_path / "c.toml"
    path.write_text("[train\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_nirne_config(path)


def test_height_field_normals_match_the_analytic_sphere() -> None:
    size = 128
    c = (np.arange(size) + 0.5) / size * 2 - 1
    x, y = np.meshgrid(c, -c)
    r2 = x**2 + y**2
    mask = r2 < 1
    normals = normals_of(np.sqrt(np.clip(1 - r2, 0, None)), mask)
    truth = np.stack([x, y, np.sqrt(np.clip(1 - r2, 0, None))], -1)  # a unit sphere's normal is its point
    inner = r2 < 0.7**2
    cos = (normals[inner] * truth[inner]).sum(-1)
    assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 1.0
    assert np.array_equal(normals[~mask], np.broadcast_to([0, 0, 1], normals[~mask].shape))


def test_domains_differ_as_the_stages_need() -> None:
    """Synthetic samples carry sharp detail (SNE has pixels); real ones are smooth but textured."""
    from training.metrics import erode_mask, sharp_mask

    sharp = {d: [] for d in ("real", "synthetic")}
    for domain in sharp:
        for seed in range(3):
            s = make_sample(domain, 64, seed)
            assert s["image"].shape == (64, 64, 3) and s["mask"].any()
            assert np.all(s["image"][~s["mask"]] == 1.0)  # composited over white
            sharp[domain].append(int((sharp_mask(s["normals"]) & erode_mask(s["mask"], 10)).sum()))
    assert min(sharp["synthetic"]) > 100 and max(sharp["real"]) < min(sharp["synthetic"]) / 4
    a, b = make_sample("synthetic", 64, 7), make_sample("synthetic", 64, 7)
    assert all(np.array_equal(a[k], b[k]) for k in a)  # reproducible from the seed


def test_captured_look_is_detail_photographed() -> None:
    """The held-out ``captured`` look: the synthetic domain's sharp detail with the real domain's sensor noise
    (a photograph of a detailed object); no training split reads it."""
    from scipy import ndimage

    from training.metrics import erode_mask, sharp_mask
    from training.nirne.trainer import STAGES

    def grain(s: dict) -> float:  # the image's pixel noise inside the object
        lum = s["image"].mean(-1)
        return float((lum - ndimage.median_filter(lum, 3))[erode_mask(s["mask"], 10)].std())

    for seed in range(3):
        captured, synthetic = make_sample("captured", 64, seed), make_sample("synthetic", 64, seed)
        assert int((sharp_mask(captured["normals"]) & erode_mask(captured["mask"], 10)).sum()) > 100
        assert grain(captured) > 0.01 > grain(synthetic)
        assert np.all(captured["image"][~captured["mask"]] == 1.0)
    assert "captured" not in STAGES
    with pytest.raises(ValueError, match="domain"):
        make_sample("scanned", 64, 0)


def test_reader_refuses_bad_samples(tmp_path: Path) -> None:
    (path,) = write_split(tmp_path, "real", 1, 32, 0)
    good = load_sample(path)
    assert good.pixels.shape == (3, 32, 32) and good.pixels.min() >= -1 and good.pixels.max() <= 1
    sample = dict(np.load(path))
    cases = {"lacks normals": {k: v for k, v in sample.items() if k != "normals"},
             "unit vectors": {**sample, "normals": sample["normals"] * 2},
             r"in \[0, 1\]": {**sample, "image": sample["image"] + 2},
             "must match": {**sample, "mask": sample["mask"][:16]}}
    for words, arrays in cases.items():
        bad = tmp_path / "bad.npz"
        np.savez(bad, **arrays)
        with pytest.raises(DataError, match=words):
            load_sample(bad)
    (tmp_path / "odd").mkdir()
    write_split(tmp_path / "odd", "real", 1, 24, 0)
    with pytest.raises(DataError, match="multiples of 16"):
        SampleFolder(tmp_path / "odd" / "real", align=16)
    with pytest.raises(DataError, match="no .npz"):
        SampleFolder(tmp_path / "odd")


def test_noise_injection_formula_and_off_switch() -> None:
    abar = alphas_cumprod()
    assert abar.shape == (1000,) and abs(float(abar[0]) - (1 - 0.00085)) < 1e-6 and float(abar[-1]) < 0.01
    off = draw_noise(5, (4, 2, 2), 0)
    assert off.t == 0 and not off.noise.any()
    on, again = draw_noise(5, (4, 2, 2), 400), draw_noise(5, (4, 2, 2), 400)
    assert 0 <= on.t <= 400 and on.t == again.t and torch.equal(on.noise, again.noise)
    g = torch.Generator().manual_seed(0)
    clean = torch.randn(2, 4, 2, 2, generator=g)
    noise = torch.randn(2, 4, 2, 2, generator=g).clamp(-1, 1)  # |noise| <= 1: at t = 0 it moves by <= 0.03
    t = torch.tensor([0, 999])
    noisy = inject_noise(clean, noise, t, abar)
    a = abar[999]
    torch.testing.assert_close(noisy[1], a.sqrt() * clean[1] + (1 - a).sqrt() * noise[1])
    assert float((noisy[0] - clean[0]).abs().max()) < 0.05  # t = 0 is nearly clean


def test_loss_terms() -> None:
    gt = torch.nn.functional.normalize(torch.randn(2, 3, 4, 4), dim=1)
    mask = torch.ones(2, 4, 4, dtype=torch.bool)
    assert float(angular_loss(3 * gt, gt, mask)) < 1e-6
    assert abs(float(angular_loss(-gt, gt, mask)) - 2.0) < 1e-6
    pred, target = torch.zeros(1, 4, 2, 2), torch.ones(1, 4, 2, 2)
    loss, terms = regression_loss(pred, target, None, 1.0, gt, mask, latent_weight=2.0, pixel_weight=0.0)
    assert float(loss) == 2.0 and set(terms) == {"latent_mse"}


def test_streams_train_exactly_the_parameters_that_get_gradients() -> None:
    """Frozen: the skipped control-branch modules and the zero-context q/k/v. Every other parameter gets a
    gradient (so DDP needs no unused-parameter search), and the branch starts as the UNet's encoder."""
    nets = fresh_networks("tiny", 0)
    streams: DualStream = nets.streams
    unet_state = streams.unet.state_dict()
    assert torch.equal(streams.controlnet.state_dict()["conv_in.weight"], unet_state["conv_in.weight"])
    assert copy_encoder(streams.unet, streams.controlnet) > 10
    latent = torch.randn(2, 4, 16, 16)
    streams(latent, latent + 0.1, torch.tensor([0, 10])).square().mean().backward()
    frozen = [n for n, p in streams.named_parameters() if not p.requires_grad]
    assert any(n.startswith(tuple("controlnet." + p for p in UNUSED_PREFIXES)) for n in frozen)
    assert any(".attn2.to_k." in n for n in frozen) and any(".norm2." in n for n in frozen)
    assert not any(".attn1." in n or ".resnets." in n for n in frozen)
    missing = [n for n, p in streams.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    assert not any(p.requires_grad for p in nets.vae.parameters())


def test_denoiser_prior_learns_epsilon_and_seeds_the_control_branch(tmp_path: Path) -> None:
    """The tiny diffusion prior: epsilon MSE falls, the UNet changes, the branch is re-copied from it, VAE kept."""
    for domain in ("real", "synthetic"):
        write_split(tmp_path / "data", domain, 2, 32, seed=0)
    init = write_tiny_init(tmp_path / "init", tmp_path / "data", vae_steps=2)
    start = load_networks(init)
    latents = image_latents(start, tmp_path / "data")
    assert latents.shape == (4, 4, 8, 8)
    before = denoiser_error(start.streams.unet, latents, (100, 600))
    folder, losses = write_pretrained_init(init, tmp_path / "data", tmp_path / "prior", steps=24, seed=3,
                                           batch=4)
    assert len(losses) == 24 and np.mean(losses[-10:]) < np.mean(losses[:10])
    prior = load_networks(folder)
    after = denoiser_error(prior.streams.unet, latents, (100, 600))
    assert all(after[t] < before[t] for t in before)
    unet, branch = prior.streams.unet.state_dict(), prior.streams.controlnet.state_dict()
    assert not torch.equal(unet["conv_in.weight"], start.streams.unet.state_dict()["conv_in.weight"])
    assert torch.equal(branch["conv_in.weight"], unet["conv_in.weight"])
    for key, value in start.vae.state_dict().items():
        assert torch.equal(prior.vae.state_dict()[key], value)
    with pytest.raises(ValueError, match="steps"):
        write_pretrained_init(init, tmp_path / "data", tmp_path / "bad", steps=-1, seed=0)
