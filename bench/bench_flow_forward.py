"""Seconds per forward pass of the two flow transformers at their real sizes (random weights, fp32, CPU).

SS flow: 4096 tokens (16^3, patch 1), cond 1374 tokens. SLat flow: voxels of a thick sphere shell in the
64^3 grid (about 20k voxels, the TRELLIS paper's average), plus a smaller shell for a quicker figure.
Baseline, measured in the same process: a plain float32 matmul; each model's FLOPs (Linear layers and
sparse convs counted with hooks, attention added analytically) divided by the matmul throughput gives
the time the model would take at matmul speed. Run: ``.venv/bin/python bench/bench_flow_forward.py``
(``--quick`` for the small SLat only; ``--threads N``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.models.configs import VARIANTS  # noqa: E402
from backend.models.loading import build_network  # noqa: E402


def matmul_gflops(seconds: float = 3.0) -> float:
    """Throughput of a [4096, 1024] x [1024, 4096] float32 matmul (GFLOP/s)."""
    a, b = torch.randn(4096, 1024), torch.randn(1024, 4096)
    a @ b
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        n += 1
    return 2 * 4096 * 1024 * 4096 * n / (time.perf_counter() - start) / 1e9


class FlopCounter:
    """Counts 2*rows*in*out for nn.Linear and 2*N*k^3*in*out for sparse convs (nominal, all taps)."""

    def __init__(self, model: nn.Module) -> None:
        self.flops = 0.0
        self.handles = []
        for module in model.modules():
            if isinstance(module, nn.Linear):
                self.handles.append(module.register_forward_hook(self._linear))
            elif type(module).__name__ == "SparseConv3d":
                self.handles.append(module.register_forward_hook(self._conv))

    def _linear(self, module: nn.Linear, args: tuple, out: object) -> None:
        x = args[0].feats if hasattr(args[0], "feats") else args[0]
        self.flops += 2.0 * x.numel() / module.in_features * module.in_features * module.out_features

    def _conv(self, module: nn.Module, args: tuple, out: object) -> None:
        w = next(module.parameters())  # [out, k, k, k, in]
        self.flops += 2.0 * out.feats.shape[0] * w.numel()  # type: ignore[attr-defined]

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def attention_flops(tokens: int, cond: int, channels: int, blocks: int) -> float:
    """QK^T and AV of self-attention (tokens^2) and cross-attention (tokens x cond), all blocks."""
    return blocks * 4.0 * channels * (tokens * tokens + tokens * cond)


def shell_coords(radius: float, thickness: float, res: int = 64) -> torch.Tensor:
    """[N, 4] int32 (0, x, y, z) coords of a sphere shell centred in a res^3 grid, C order."""
    axis = torch.arange(res, dtype=torch.float32) + 0.5 - res / 2
    d = torch.sqrt(axis[:, None, None] ** 2 + axis[None, :, None] ** 2 + axis[None, None, :] ** 2)
    xyz = torch.argwhere((d - radius).abs() < thickness / 2)
    return torch.cat([torch.zeros(len(xyz), 1, dtype=xyz.dtype), xyz], dim=1).int()


def timed(fn: object, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times)


def bench_ss_flow(repeats: int) -> tuple[str, float, float]:
    model = build_network(VARIANTS["ss_flow_normal_dit_L_16l8_fp16"], "cpu").eval()
    x, t, cond = torch.randn(1, 8, 16, 16, 16), torch.tensor([1000.0]), torch.randn(1, 1374, 1024)
    counter = FlopCounter(model)
    with torch.no_grad():
        seconds = timed(lambda: model(x, t, cond), repeats)
    flops = counter.flops / repeats + attention_flops(4096, 1374, 1024, 24)
    counter.close()
    return "SS flow, 4096 tokens", seconds, flops


def bench_slat_flow(model: nn.Module, coords: torch.Tensor, repeats: int) -> tuple[str, float, float]:
    from backend.nn.sparse_tensor import SparseTensor

    x = SparseTensor(coords, torch.randn(len(coords), 8))
    tokens = len(torch.unique(coords[:, 1:] // 2, dim=0))
    t, cond = torch.tensor([1000.0]), torch.randn(1, 1374, 1024)
    counter = FlopCounter(model)
    with torch.no_grad():
        seconds = timed(lambda: model(x, t, cond), repeats)
    flops = counter.flops / repeats + attention_flops(tokens, 1374, 1024, 24)
    counter.close()
    return f"SLat flow, {len(coords)} voxels / {tokens} tokens", seconds, flops


class _Tokens:
    """Minimal SparseTensor stand-in (coords, feats, replace, batch_size) for the torso-only fallback."""

    def __init__(self, coords: torch.Tensor, feats: torch.Tensor) -> None:
        self.coords, self.feats, self.batch_size = coords, feats, 1

    def replace(self, feats: torch.Tensor) -> _Tokens:
        return _Tokens(self.coords, feats)


def bench_slat_torso(model: nn.Module, coords: torch.Tensor, repeats: int) -> tuple[str, float, float]:
    """Only the 24 transformer blocks on the 32^3 tokens of ``coords`` (when the sparse ops are absent)."""
    cells = torch.unique(coords[:, 1:] // 2, dim=0)
    h = _Tokens(
        torch.cat([torch.zeros(len(cells), 1, dtype=cells.dtype), cells], 1), torch.randn(len(cells), 1024)
    )
    t_emb, cond = torch.randn(1, 1024), torch.randn(1, 1374, 1024)
    counter = FlopCounter(model.blocks)

    def run() -> None:
        x = h
        for block in model.blocks:
            x = block(x, t_emb, cond)

    with torch.no_grad():
        seconds = timed(run, repeats)
    flops = counter.flops / repeats + attention_flops(len(cells), 1374, 1024, 24)
    counter.close()
    return f"SLat flow 24 blocks only, {len(cells)} tokens", seconds, flops


def _has_sparse_ops() -> bool:
    try:
        import backend.nn.sparse_conv  # noqa: F401
        import backend.nn.sparse_resample  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the ~20k-voxel SLat run")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    gflops = matmul_gflops()
    print(
        f"baseline: float32 matmul 4096x1024x4096 = {gflops:.1f} GFLOP/s ({torch.get_num_threads()} threads)"
    )
    rows = [bench_ss_flow(args.repeats)]
    shells = [shell_coords(18.0, 1.5)] + ([] if args.quick else [shell_coords(27.0, 2.2)])
    if _has_sparse_ops():
        slat = build_network(VARIANTS["slat_flow_normal_dit_L_64l8p2_fp16"], "cpu").eval()
        rows.extend(bench_slat_flow(slat, coords, args.repeats) for coords in shells)
    else:
        print("backend.nn.sparse_* missing: timing the SLat flow's transformer blocks only")
        from backend.models.configs import SLatFlowConfig
        from backend.nn.sparse_transformer import ModulatedSparseCrossBlock

        cfg = VARIANTS["slat_flow_normal_dit_L_64l8p2_fp16"]
        assert isinstance(cfg, SLatFlowConfig)
        torso = nn.Module()
        torso.blocks = nn.ModuleList(
            ModulatedSparseCrossBlock(1024, 1024, cfg.heads, qk_rms_norm=True) for _ in range(cfg.num_blocks)
        ).eval()
        rows.extend(bench_slat_torso(torso, coords, args.repeats) for coords in shells)
    print(
        f"{'forward pass (fp32, random weights)':44s} {'s/forward':>10s} {'TFLOP':>7s} {'at-matmul s':>14s} "
        f"{'ratio':>6s}"
    )
    for name, seconds, flops in rows:
        ideal = flops / (gflops * 1e9)
        print(f"{name:44s} {seconds:10.2f} {flops / 1e12:7.2f} {ideal:14.2f} {seconds / ideal:6.2f}")


if __name__ == "__main__":
    main()
