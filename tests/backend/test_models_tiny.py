"""Tiny variants run forward on CPU with the expected shapes; pieces match independent references."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from backend.models.configs import VARIANTS
from backend.models.testing import random_network
from backend.nn.attention import CrossAttention
from backend.nn.embeddings import absolute_position_embedding, grid_position_embedding, timestep_embedding
from backend.nn.transformer import ModulatedCrossBlock


def _sphere_shell(res: int, radius: float, batch: int = 0) -> torch.Tensor:
    """[N, 4] int32 coords (b, x, y, z) of a one-voxel-thick sphere shell in a res^3 grid, C order."""
    axis = torch.arange(res, dtype=torch.float32) + 0.5 - res / 2
    d = torch.sqrt(axis[:, None, None] ** 2 + axis[None, :, None] ** 2 + axis[None, None, :] ** 2)
    xyz = torch.argwhere((d - radius).abs() < 0.5)
    return torch.cat([torch.full((len(xyz), 1), batch), xyz], dim=1).int()


# ---- independent references -------------------------------------------------------------------------


def _ref_ape(coords: torch.Tensor, channels: int) -> torch.Tensor:
    """The brief's formula, element by element."""
    freq_dim = channels // 3 // 2
    out = torch.zeros(len(coords), channels, dtype=torch.float64)
    for n, c in enumerate(coords.tolist()):
        col = 0
        for axis in range(3):
            for i in range(freq_dim):
                out[n, col + i] = math.sin(c[axis] / 10000 ** (i / freq_dim))
                out[n, col + freq_dim + i] = math.cos(c[axis] / 10000 ** (i / freq_dim))
            col += 2 * freq_dim
    return out


def _ref_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """[B, L, H, D] attention with an explicit softmax."""
    w = torch.einsum("blhd,bmhd->bhlm", q, k) / math.sqrt(q.shape[-1])
    return torch.einsum("bhlm,bmhd->blhd", w.softmax(dim=-1), v)


def _ref_block(
    block: ModulatedCrossBlock, x: torch.Tensor, t_emb: torch.Tensor, ctx: torch.Tensor
) -> torch.Tensor:
    """The modulated cross block written out from the brief (§1.6) with the block's weights."""
    c = x.shape[-1]
    heads = block.self_attn.num_heads
    d = c // heads
    mod = F.linear(F.silu(t_emb), block.adaLN_modulation[1].weight, block.adaLN_modulation[1].bias)
    sh1, sc1, g1, sh2, sc2, g2 = [m[:, None, :] for m in mod.split(c, dim=1)]

    def ln(v: torch.Tensor, w: torch.Tensor | None = None, b: torch.Tensor | None = None) -> torch.Tensor:
        mu, var = v.mean(-1, keepdim=True), v.var(-1, unbiased=False, keepdim=True)
        out = (v - mu) / torch.sqrt(var + 1e-6)
        return out * w + b if w is not None else out

    def rms(v: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12) * gamma * math.sqrt(d)

    h = ln(x) * (1 + sc1) + sh1
    qkv = F.linear(h, block.self_attn.to_qkv.weight, block.self_attn.to_qkv.bias).view(
        *x.shape[:2], 3, heads, d
    )
    q = rms(qkv[:, :, 0], block.self_attn.q_rms_norm.gamma)
    k = rms(qkv[:, :, 1], block.self_attn.k_rms_norm.gamma)
    a = _ref_attention(q, k, qkv[:, :, 2]).reshape(*x.shape)
    x = x + g1 * F.linear(a, block.self_attn.to_out.weight, block.self_attn.to_out.bias)
    h = ln(x, block.norm2.weight, block.norm2.bias)
    q = F.linear(h, block.cross_attn.to_q.weight, block.cross_attn.to_q.bias).view(*x.shape[:2], heads, d)
    kv = F.linear(ctx, block.cross_attn.to_kv.weight, block.cross_attn.to_kv.bias).view(
        *ctx.shape[:2], 2, heads, d
    )
    a = _ref_attention(q, kv[:, :, 0], kv[:, :, 1]).reshape(*x.shape)
    x = x + F.linear(a, block.cross_attn.to_out.weight, block.cross_attn.to_out.bias)
    h = ln(x) * (1 + sc2) + sh2
    m = block.mlp.mlp
    h = F.linear(F.gelu(F.linear(h, m[0].weight, m[0].bias), approximate="tanh"), m[2].weight, m[2].bias)
    return x + g2 * h


# ---- numerical checks ---------------------------------------------------------------------------------


def test_ape_matches_formula() -> None:
    coords = torch.tensor([[0, 0, 0], [1, 2, 3], [63, 17, 40], [31, 31, 0]])
    for channels in (1024, 768, 32):
        got = absolute_position_embedding(coords, channels).double()
        assert torch.allclose(got, _ref_ape(coords, channels), atol=1e-5)
    grid = grid_position_embedding(4, 48)
    assert torch.allclose(
        grid[1 * 16 + 2 * 4 + 3].double(), _ref_ape(torch.tensor([[1, 2, 3]]), 48)[0], atol=1e-6
    )


def test_timestep_embedding_is_cos_then_sin() -> None:
    t = torch.tensor([0.0, 500.0, 1000.0])
    emb = timestep_embedding(t, 8)
    freqs = torch.exp(-math.log(10000) * torch.arange(4) / 4)
    assert torch.allclose(emb, torch.cat([torch.cos(t[:, None] * freqs), torch.sin(t[:, None] * freqs)], 1))


def test_modulated_block_matches_reference() -> None:
    torch.manual_seed(0)
    block = ModulatedCrossBlock(32, 24, num_heads=4, qk_rms_norm=True).double()
    for p in block.parameters():
        torch.nn.init.normal_(p, std=0.2)
    x, t_emb, ctx = (
        torch.randn(2, 10, 32).double(),
        torch.randn(2, 32).double(),
        torch.randn(2, 7, 24).double(),
    )
    with torch.no_grad():
        assert torch.allclose(block(x, t_emb, ctx), _ref_block(block, x, t_emb, ctx), atol=1e-10)


def test_context_cache_reuses_and_invalidates() -> None:
    torch.manual_seed(0)
    attn = CrossAttention(16, 8, num_heads=2)
    x, ctx = torch.randn(1, 5, 16), torch.randn(1, 3, 8)
    with torch.no_grad():
        plain = attn(x, ctx)
        attn.cache_size = 2
        assert torch.equal(attn(x, ctx), plain) and len(attn._cache) == 1
        assert torch.equal(attn(x, ctx), plain) and len(attn._cache) == 1  # hit
        ctx.mul_(2)  # in-place change bumps the version: recomputed
        assert not torch.allclose(attn(x, ctx), plain) and len(attn._cache) == 2


def test_a_constant_context_takes_the_shortcut_and_gives_the_full_result() -> None:
    """Guidance's zero condition: attention over equal keys is their one value, whatever the query."""
    torch.manual_seed(0)
    attn = CrossAttention(16, 8, num_heads=2, qk_rms_norm=True).double()
    x, ctx = torch.randn(3, 5, 16).double(), torch.randn(3, 4, 8).double()
    ctx[1] = 0.0  # the negative condition
    ctx[2] = ctx[2, :1]  # any constant context
    with torch.no_grad():
        full = attn.attend(x, ctx)
        fast = attn(x, ctx)
        assert torch.allclose(fast, full, atol=1e-12)
        assert torch.equal(fast[0], attn.attend(x[:1], ctx[:1])[0])  # a varied context keeps the full path
        calls: list[tuple[int, ...]] = []
        attn.to_q.register_forward_hook(lambda _m, args, _o: calls.append(tuple(args[0].shape)))
        attn(x[1:], ctx[1:])
    assert calls == []  # no query projected for constant rows
    attn(x[1:], ctx[1:])  # with autograd (training): the full path, so every weight is in the graph
    assert calls == [(2, 5, 16)]


def test_the_sparse_block_shortcut_equals_the_full_cross_attention() -> None:
    from backend.nn.sparse_tensor import SparseTensor
    from backend.nn.sparse_transformer import (
        ModulatedSparseCrossBlock,
        cross_attention,
        sample_indices,
        sparse_cross_attention,
    )

    torch.manual_seed(1)
    block = ModulatedSparseCrossBlock(32, 24, num_heads=4, qk_rms_norm=True, qk_rms_norm_cross=True).double()
    coords = torch.cat([_sphere_shell(8, 3.0, 0), _sphere_shell(8, 3.0, 1)])
    f = torch.randn(len(coords), 32).double()
    ctx = torch.cat([torch.randn(1, 7, 24), torch.zeros(1, 7, 24)]).double()
    layer, groups = block.cross_attn, sample_indices(coords, 2)
    with torch.no_grad():
        k, v = layer.context_kv(ctx)
        full = layer.to_out(cross_attention(layer.project_q(f), k, v, groups).flatten(-2))
        assert torch.allclose(sparse_cross_attention(layer, f, ctx, groups), full, atol=1e-12)
        x = SparseTensor(coords, f)
        assert block(x, torch.randn(2, 32).double(), ctx).feats.shape == f.shape


# ---- tiny networks ------------------------------------------------------------------------------------


def test_tiny_ss_flow_forward() -> None:
    model, _ = random_network(VARIANTS["tiny_ss_flow"], seed=1)
    x, t, cond = torch.randn(2, 8, 16, 16, 16), torch.tensor([1000.0, 250.0]), torch.randn(2, 1374, 32)
    with torch.no_grad():
        v = model(x, t, cond)
        assert v.shape == x.shape and v.dtype == torch.float32 and torch.isfinite(v).all()
        # batch elements are independent
        assert torch.allclose(model(x[1:], t[1:], cond[1:]), v[1:], atol=1e-4)
        model.set_compute_dtype(torch.bfloat16)
        assert model.blocks[0].self_attn.to_qkv.weight.dtype == torch.bfloat16
        assert model.blocks[0].norm2.weight.dtype == torch.float32
        assert model.blocks[0].self_attn.q_rms_norm.gamma.dtype == torch.float32
        assert model.input_layer.weight.dtype == torch.float32
        v16 = model(x, t, cond)
    assert v16.dtype == torch.float32 and (v16 - v).abs().mean() < 0.1 * v.abs().mean()


def test_patchify_roundtrip_with_patch_2() -> None:
    from backend.models.ss_flow import patchify, unpatchify

    x = torch.randn(2, 3, 8, 8, 8)
    tokens = patchify(x, 2)
    assert tokens.shape == (2, 64, 24)
    # token (1, 2, 3), channel c * 8 + (i * 2 + j) * 2 + k holds voxel (2 + i, 4 + j, 6 + k) of channel c
    assert torch.equal(tokens[0, 1 * 16 + 2 * 4 + 3, 2 * 8 + 1 * 4 + 0 * 2 + 1], x[0, 2, 2 + 1, 4 + 0, 6 + 1])
    assert torch.equal(unpatchify(tokens, 2, 3, 4), x)


def test_tiny_ss_decoder_forward() -> None:
    model, _ = random_network(VARIANTS["tiny_ss_dec"], seed=2)
    with torch.no_grad():
        logits = model(torch.randn(1, 8, 16, 16, 16))
    assert logits.shape == (1, 1, 64, 64, 64) and logits.dtype == torch.float32


def test_pixel_shuffle_3d_layout() -> None:
    from backend.models.ss_decoder import pixel_shuffle_3d

    x = torch.arange(2 * 8 * 2 * 3 * 4, dtype=torch.float32).reshape(1, 16, 2, 3, 4)
    y = pixel_shuffle_3d(x, 2)
    assert y.shape == (1, 2, 4, 6, 8)
    # output (c, 2X+i, 2Y+j, 2Z+k) comes from channel c*8 + i*4 + j*2 + k at (X, Y, Z)
    assert y[0, 1, 2 * 1 + 1, 2 * 2 + 0, 2 * 3 + 1] == x[0, 8 + 4 + 0 + 1, 1, 2, 3]


def test_tiny_dinov2_forward_and_matches_transformers() -> None:
    from backend.models.dinov2 import convert_hf_state_dict, to_hf_state_dict

    config = dataclasses.replace(VARIANTS["tiny_dinov2"], img_size=70)  # 5 x 5 patches keep it fast
    model, state = random_network(config, seed=3)
    image = torch.randn(1, 3, 70, 70)
    with torch.no_grad():
        cond = model(image)
        pre = model.prenorm_tokens(image)
    assert cond.shape == (1, 1 + 4 + 25, 32)
    assert torch.allclose(cond, F.layer_norm(pre, (32,)), atol=1e-6)
    transformers = pytest.importorskip("transformers")
    hf_config = transformers.Dinov2WithRegistersConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=70,
        patch_size=14,
        num_register_tokens=4,
        layer_norm_eps=1e-6,
    )
    hf = transformers.Dinov2WithRegistersModel(hf_config).eval()
    hf_state = hf.state_dict()
    ours_as_hf = to_hf_state_dict(state)
    renamed = {_new_hf_name(k): v for k, v in ours_as_hf.items()}
    load = renamed if set(renamed) == set(hf_state) else ours_as_hf
    hf.load_state_dict(load, strict=True)
    assert set(convert_hf_state_dict(hf_state)) == set(state)  # the installed naming converts too
    with torch.no_grad():
        out = hf(pixel_values=image, output_hidden_states=True)
    assert torch.allclose(out.hidden_states[-1], pre, atol=1e-4)


def _new_hf_name(key: str) -> str:
    """File naming -> the module naming of newer transformers (q_proj/k_proj/v_proj/o_proj)."""
    for old, new in (
        ("attention.attention.query", "attention.q_proj"),
        ("attention.attention.key", "attention.k_proj"),
        ("attention.attention.value", "attention.v_proj"),
        ("attention.output.dense", "attention.o_proj"),
    ):
        key = key.replace(old, new)
    return key


def test_preprocess_normal_map() -> None:
    import numpy as np

    from backend.models.dinov2 import preprocess_normal_map

    img = np.full((100, 80, 4), 255, dtype=np.uint8)
    x = preprocess_normal_map(img)
    assert x.shape == (1, 3, 518, 518)
    assert torch.allclose(
        x[0, :, 0, 0], (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    )


# ---- sparse networks (need backend.nn.sparse_*) -------------------------------------------------------


def _sparse():
    return pytest.importorskip("backend.nn.sparse_tensor")


def test_tiny_slat_flow_forward() -> None:
    st = _sparse()
    model, _ = random_network(VARIANTS["tiny_slat_flow"], seed=4)
    coords = _sphere_shell(64, 12.0)
    x = st.SparseTensor(coords, torch.randn(len(coords), 8))
    with torch.no_grad():
        v = model(x, torch.tensor([700.0]), torch.randn(1, 1374, 32))
    assert v.feats.shape == (len(coords), 8) and v.feats.dtype == torch.float32
    assert torch.equal(v.coords, coords) and torch.isfinite(v.feats).all()


def test_tiny_slat_flow_batch_matches_single() -> None:
    st = _sparse()
    model, _ = random_network(VARIANTS["tiny_slat_flow"], seed=4)
    a, b = _sphere_shell(64, 6.0, 0), _sphere_shell(64, 9.0, 1)
    fa, fb = torch.randn(len(a), 8), torch.randn(len(b), 8)
    cond = torch.randn(2, 1374, 32)
    t = torch.tensor([700.0, 300.0])
    with torch.no_grad():
        both = model(st.SparseTensor(torch.cat([a, b]), torch.cat([fa, fb])), t, cond)
        one = model(st.SparseTensor(a, fa), t[:1], cond[:1])
    assert torch.allclose(both.feats[: len(a)], one.feats, atol=1e-4)


def test_tiny_mesh_decoder_forward() -> None:
    st = _sparse()
    model, _ = random_network(VARIANTS["tiny_mesh_dec"], seed=5)
    coords = _sphere_shell(64, 5.0)
    with torch.no_grad():
        out = model(st.SparseTensor(coords, torch.randn(len(coords), 8)))
    assert out.feats.shape == (64 * len(coords), 101) and out.feats.dtype == torch.float32
    assert out.coords.shape == (64 * len(coords), 4)
    assert int(out.coords[:, 1:].min()) >= 0 and int(out.coords[:, 1:].max()) < 256
    parents = torch.unique(out.coords[:, 1:] // 4, dim=0)
    assert torch.equal(parents, torch.unique(coords[:, 1:].long(), dim=0))


def test_sparse_block_equals_dense_block_per_sample() -> None:
    st = _sparse()
    from backend.nn.sparse_transformer import ModulatedSparseCrossBlock

    torch.manual_seed(0)
    sparse = ModulatedSparseCrossBlock(32, 16, num_heads=4, qk_rms_norm=True)
    dense = ModulatedCrossBlock(32, 16, num_heads=4, qk_rms_norm=True)
    for p in sparse.parameters():
        torch.nn.init.normal_(p, std=0.2)
    dense.load_state_dict(sparse.state_dict())
    a, b = _sphere_shell(16, 3.0, 0), _sphere_shell(16, 5.0, 1)
    fa, fb = torch.randn(len(a), 32), torch.randn(len(b), 32)
    t_emb, ctx = torch.randn(2, 32), torch.randn(2, 6, 16)
    with torch.no_grad():
        out = sparse(st.SparseTensor(torch.cat([a, b]), torch.cat([fa, fb])), t_emb, ctx).feats
        ref_a = dense(fa[None], t_emb[:1], ctx[:1])[0]
        ref_b = dense(fb[None], t_emb[1:], ctx[1:])[0]
    assert torch.allclose(out, torch.cat([ref_a, ref_b]), atol=1e-5)
