"""Sparse voxel ops against dense references: conv, resampling, norms, attention."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from backend.nn import sparse_attention, sparse_conv, sparse_neighbors, sparse_norm
from backend.nn.sparse_attention import sparse_full_attention, sparse_window_attention, window_partition
from backend.nn.sparse_conv import SparseConv3d, SparseLinear
from backend.nn.sparse_neighbors import kernel_map
from backend.nn.sparse_norm import SparseGroupNorm32, SparseLayerNorm32
from backend.nn.sparse_resample import sparse_downsample, sparse_subdivide, sparse_upsample
from backend.nn.sparse_tensor import SparseTensor, pack_coords, sparse_cat, unpack_keys


def random_coords(
    sizes: list[int], density: float = 0.3, seed: int = 0, shuffle: bool = True
) -> torch.Tensor:
    """Random active voxels of len(sizes) samples (sample b inside a sizes[b]^3 box), rows shuffled."""
    g = torch.Generator().manual_seed(seed)
    parts = []
    for b, r in enumerate(sizes):
        xyz = torch.nonzero(torch.rand(r, r, r, generator=g) < density)  # [n, 3]
        parts.append(torch.cat([torch.full_like(xyz[:, :1], b), xyz], dim=1))
    coords = torch.cat(parts).int()  # [N, 4]
    if shuffle:
        coords = coords[torch.randperm(len(coords), generator=g)]
    return coords


def densify(coords: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    """[N, 4] + [N, C] -> dense [B, C, X, Y, Z] (zeros where inactive)."""
    c = coords.long()
    shape = [int(c[:, 0].max()) + 1, feats.shape[1], *(int(c[:, a].max()) + 1 for a in (1, 2, 3))]
    dense = feats.new_zeros(shape)
    dense[c[:, 0], :, c[:, 1], c[:, 2], c[:, 3]] = feats
    return dense


def at_sites(dense: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Values of dense [B, C, X, Y, Z] at coords [N, 4] -> [N, C]."""
    c = coords.long()
    return dense[c[:, 0], :, c[:, 1], c[:, 2], c[:, 3]]


# ---- tensor -------------------------------------------------------------------------------------------


def test_pack_unpack_roundtrip_and_order() -> None:
    rows = [[0, -3, 5, 7], [1, 0, 0, 0], [0, -3, 5, 6], [0, 2, -1, 9], [3, 100, 200, 255]]
    coords = torch.tensor(rows).int()
    keys = pack_coords(coords)
    assert torch.equal(unpack_keys(keys), coords)
    ranked = sorted(range(len(coords)), key=lambda i: tuple(coords[i].tolist()))
    assert torch.argsort(keys).tolist() == ranked


def test_tensor_replace_shares_cache_and_batch_helpers() -> None:
    coords = random_coords([5, 4], shuffle=False)
    x = SparseTensor(coords, torch.randn(len(coords), 3))
    assert x.batch_size == 2
    slices = x.batch_slices()
    assert slices is not None and slices[1].stop == len(coords)
    y = x.replace(torch.zeros(len(coords), 6))
    assert y._cache is x._cache and y.coords is x.coords
    cat = sparse_cat(x, y)
    assert cat.feats.shape == (len(coords), 9) and torch.equal(cat.feats[:, :3], x.feats)
    shuffled = SparseTensor(coords.flip(0), x.feats)
    assert shuffled.batch_slices() is None
    rows = shuffled.sample_rows()
    assert all(bool((coords.flip(0)[r, 0] == b).all()) for b, r in enumerate(rows))
    with pytest.raises(ValueError):
        sparse_cat(x, shuffled)


# ---- convolution ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel_size", [3, 1])
@pytest.mark.parametrize("lookup", ["grid", "sorted"])
@pytest.mark.parametrize("grad", [False, True])
def test_conv_matches_dense_conv3d(
    kernel_size: int, lookup: str, grad: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if lookup == "sorted":
        monkeypatch.setattr(sparse_neighbors, "DENSE_GRID_LIMIT", 0)
    monkeypatch.setattr(sparse_conv, "CHUNK_ROWS", 50)  # several chunks per kernel offset
    coords = random_coords([9, 6], density=0.35, seed=kernel_size)
    torch.manual_seed(1)
    conv = SparseConv3d(5, 7, kernel_size, spconv_1x1=False).double()
    torch.nn.init.normal_(conv.conv.weight)
    feats = torch.randn(len(coords), 5, dtype=torch.float64)
    with torch.set_grad_enabled(grad):
        out = conv(SparseTensor(coords, feats))
    w = conv.conv.weight.permute(0, 4, 1, 2, 3)  # KRSC -> [out, in, kD, kH, kW]
    ref = F.conv3d(densify(coords, feats), w, conv.conv.bias, padding=kernel_size // 2)
    assert out.coords is coords
    torch.testing.assert_close(out.feats, at_sites(ref, coords), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("lookup", ["grid", "sorted"])
def test_conv_translation_invariant_negative_coords(lookup: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if lookup == "sorted":
        monkeypatch.setattr(sparse_neighbors, "DENSE_GRID_LIMIT", 0)
    coords = random_coords([7, 7], seed=9)
    moved = coords - torch.tensor([0, 40, 3, 70], dtype=coords.dtype)
    conv = SparseConv3d(3, 4, 3)
    feats = torch.randn(len(coords), 3)
    with torch.no_grad():
        ref = conv(SparseTensor(coords, feats)).feats
        out = conv(SparseTensor(moved, feats)).feats
    torch.testing.assert_close(out, ref)


def test_conv_1x1_reads_weight_like_spconv() -> None:
    """spconv 2.x computes a 1x1x1 conv as feats @ weight.view(in, out) (issue #450); the default follows."""
    coords = random_coords([5])
    conv = SparseConv3d(6, 4, 1)
    feats = torch.randn(len(coords), 6)
    out = conv(SparseTensor(coords, feats)).feats
    ref = feats @ conv.conv.weight.reshape(6, 4) + conv.conv.bias
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("kernel_size", [3, 1])
def test_conv_matches_spconv_when_installed(kernel_size: int) -> None:
    """Same weights through spconv's SubMConv3d (optional; skipped unless spconv is importable)."""
    spconv = pytest.importorskip("spconv.pytorch")
    coords = random_coords([10, 7], seed=11)
    ref = spconv.SubMConv3d(6, 5, kernel_size, bias=True, algo=spconv.ConvAlgo.Native)
    torch.nn.init.normal_(ref.weight)
    torch.nn.init.normal_(ref.bias)
    ours = SparseConv3d(6, 5, kernel_size)
    ours.load_state_dict({"conv.weight": ref.weight.detach(), "conv.bias": ref.bias.detach()})
    feats = torch.randn(len(coords), 6)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # spconv's CPU scatter is racy with several threads (seen with 2.3.8)
    try:
        with torch.no_grad():
            want = ref(spconv.SparseConvTensor(feats, coords, [10, 10, 10], 2)).features
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        got = ours(SparseTensor(coords, feats)).feats
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_conv_asymmetric_kernel_orientation() -> None:
    """A kernel with one non-zero tap moves features by a known offset along x (column 1 = dense D)."""
    coords = torch.tensor([[0, 1, 1, 1], [0, 2, 1, 1], [0, 1, 2, 1]]).int()
    conv = SparseConv3d(1, 1, 3, bias=False)
    with torch.no_grad():
        conv.conv.weight.zero_()
        conv.conv.weight[0, 2, 1, 1, 0] = 1.0  # tap at offset (+1, 0, 0): out[c] = in[c + x]
    out = conv(SparseTensor(coords, torch.tensor([[1.0], [10.0], [100.0]])))
    assert out.feats.squeeze(1).tolist() == [10.0, 0.0, 0.0]


def test_conv_state_dict_keys_and_cached_kernel_map() -> None:
    conv = SparseConv3d(4, 6, 3)
    shapes = {k: tuple(v.shape) for k, v in conv.state_dict().items()}
    assert shapes == {"conv.weight": (6, 3, 3, 3, 4), "conv.bias": (6,)}
    coords = random_coords([6])
    x = SparseTensor(coords, torch.randn(len(coords), 4))
    h = conv(x)
    assert kernel_map(h, 3) is kernel_map(x, 3)  # built once, shared through replace()
    lin = SparseLinear(6, 2)
    assert lin(h).feats.shape == (len(coords), 2) and set(lin.state_dict()) == {"weight", "bias"}


def test_conv_half_precision_runs_in_input_dtype() -> None:
    coords = random_coords([6, 5])
    conv = SparseConv3d(8, 8, 3)
    feats = torch.randn(len(coords), 8)
    ref = conv(SparseTensor(coords, feats)).feats
    out = conv.to(torch.bfloat16)(SparseTensor(coords, feats.bfloat16())).feats
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, rtol=0.05, atol=0.05)


# ---- resampling ------------------------------------------------------------------------------------------


def test_downsample_mean_sorted_and_upsample_restores_order() -> None:
    coords = random_coords([8, 7], density=0.4, seed=3)
    feats = torch.randn(len(coords), 4, dtype=torch.float64)
    x = SparseTensor(coords, feats)
    coarse = sparse_downsample(x, 2, zero_in_mean=False)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, c in enumerate(coords.tolist()):
        groups.setdefault((c[0], c[1] // 2, c[2] // 2, c[3] // 2), []).append(i)
    parents = sorted(groups)
    assert coarse.coords.tolist() == [list(p) for p in parents] and coarse.coords.dtype == coords.dtype
    ref = torch.stack([feats[groups[p]].mean(0) for p in parents])
    torch.testing.assert_close(coarse.feats, ref)
    up = sparse_upsample(coarse, x)
    assert up.coords is coords and up._cache is x._cache
    parent_row = {p: j for j, p in enumerate(parents)}
    expect = torch.stack([ref[parent_row[(c[0], c[1] // 2, c[2] // 2, c[3] // 2)]] for c in coords.tolist()])
    torch.testing.assert_close(up.feats, expect)
    fresh = sparse_upsample(coarse.replace(coarse.feats * 2), coords.clone())  # no cached map: lookup
    torch.testing.assert_close(fresh.feats, 2 * expect)
    with pytest.raises(ValueError):
        sparse_upsample(coarse, torch.tensor([[0, 100, 100, 100]]).int())


def test_downsample_default_matches_release_scatter_mean() -> None:
    """The release pools with scatter_reduce('mean') onto zeros (include_self): sum / (count + 1)."""
    coords = random_coords([6, 5], density=0.5, seed=5)
    feats = torch.randn(len(coords), 3, dtype=torch.float64)
    coarse = sparse_downsample(SparseTensor(coords, feats))
    codes = pack_coords(torch.cat([coords[:, :1], coords[:, 1:] // 2], dim=1))
    _, inverse = codes.unique(return_inverse=True)
    zeros = torch.zeros(len(coarse.coords), 3, dtype=torch.float64)
    ref = torch.scatter_reduce(zeros, 0, inverse[:, None].expand(-1, 3), feats, reduce="mean")
    torch.testing.assert_close(coarse.feats, ref)


def test_subdivide_children_order() -> None:
    coords = torch.tensor([[0, 1, 2, 3], [1, 0, 0, 5]]).int()
    x = SparseTensor(coords, torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    out = sparse_subdivide(x)
    kids = torch.nonzero(torch.ones(2, 2, 2)).int()  # z fastest
    expect = torch.cat([torch.cat([c[:1], 2 * c[1:] + kids[i]])[None] for c in coords for i in range(8)])
    assert torch.equal(out.coords, expect)
    assert torch.equal(out.feats, x.feats.repeat_interleave(8, dim=0))
    again = sparse_subdivide(x.replace(x.feats + 1))
    assert again.coords is out.coords and again._cache is out._cache


# ---- norms -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_group_norm_per_sample(dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sparse_norm, "ROW_CHUNK", 37)  # exercise the chunked float32 passes
    coords = random_coords([7, 5], seed=4)  # shuffled rows: samples interleaved
    feats = (torch.randn(len(coords), 16) * 3 + 1).to(dtype)
    norm = SparseGroupNorm32(4, 16)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    out = norm(SparseTensor(coords, feats)).feats
    assert out.dtype == dtype
    for b in range(2):
        rows = coords[:, 0] == b
        ref = F.group_norm(feats[rows].float().t()[None], 4, norm.weight, norm.bias, norm.eps)[0].t()
        tol = 1e-5 if dtype == torch.float32 else 3e-2
        torch.testing.assert_close(out[rows].float(), ref, rtol=tol, atol=tol)


def test_layer_norm32() -> None:
    coords = random_coords([5])
    feats = torch.randn(len(coords), 12).half()
    norm = SparseLayerNorm32(12, elementwise_affine=False, eps=1e-6)
    out = norm(SparseTensor(coords, feats))
    assert out.feats.dtype == torch.float16
    ref = F.layer_norm(feats.float(), (12,), eps=1e-6)
    torch.testing.assert_close(out.feats.float(), ref, rtol=2e-3, atol=2e-3)


# ---- attention ------------------------------------------------------------------------------------------


def masked_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor
) -> torch.Tensor:
    """Explicit softmax attention under a boolean [N, N] mask. q, k, v: [N, H, D] -> [N, H, D]."""
    scores = torch.einsum("nhd,mhd->hnm", q, k) / q.shape[-1] ** 0.5  # [H, N, N]
    scores = scores.masked_fill(~allowed[None], float("-inf"))
    return torch.einsum("hnm,mhd->nhd", scores.softmax(-1), v)


def qkv(n: int, heads: int = 3, dim: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(n)
    return tuple(torch.randn(n, heads, dim, generator=g, dtype=torch.float64) for _ in range(3))  # type: ignore[return-value]


def test_full_attention_per_sample() -> None:
    coords = random_coords([5, 4], seed=6)
    q, k, v = qkv(len(coords))
    batch = coords[:, 0]
    ref = masked_attention(q, k, v, batch[:, None] == batch[None, :])
    torch.testing.assert_close(sparse_full_attention(q, k, v, batch), ref)
    torch.testing.assert_close(sparse_full_attention(q, k, v, SparseTensor(coords, q[:, 0])), ref)
    one = masked_attention(q, k, v, torch.ones(len(q), len(q), dtype=torch.bool))
    torch.testing.assert_close(sparse_full_attention(q, k, v), one)


@pytest.mark.parametrize("shift", [0, 2])
def test_window_attention_matches_block_mask(shift: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sparse_attention, "SCORE_BUDGET", 3 * 40 * 40 * 3)  # a few windows per call
    coords = random_coords([11, 9], density=0.3, seed=7)
    q, k, v = qkv(len(coords))
    win = torch.cat([coords[:, :1], torch.div(coords[:, 1:] + shift, 4, rounding_mode="floor")], dim=1)
    allowed = (win[:, None, :] == win[None, :, :]).all(-1)  # [N, N] same batch and same window
    ref = masked_attention(q, k, v, allowed)
    torch.testing.assert_close(sparse_window_attention(q, k, v, coords, 4, shift), ref)
    x = SparseTensor(coords, q[:, 0])
    torch.testing.assert_close(sparse_window_attention(q, k, v, x, 4, shift), ref)
    assert ("window_partition", 4, shift) in x._cache


def test_window_partition_covers_every_row_once() -> None:
    coords = random_coords([16, 12], density=0.2, seed=8)
    buckets = window_partition(coords, 8, 4)
    rows = torch.cat([b.rows[b.valid] for b in buckets])
    assert torch.equal(rows.sort().values, torch.arange(len(coords)))
    assert all(torch.equal(b.dest[b.valid], b.rows[b.valid]) for b in buckets)
    assert all(bool((b.dest[~b.valid] == len(coords)).all()) for b in buckets)
    assert all(b.rows.shape[1] % 8 == 0 for b in buckets)
