"""Submanifold sparse conv throughput (``backend.nn.sparse_conv``) against ``F.conv3d`` on the dense grid.

Run: .venv/bin/python bench/bench_sparse_conv.py [--device cpu|cuda|mps] [--dtype fp32|fp16|bf16]

Shapes follow the release's networks on sphere shells (a surface-like voxel set): the SLat flow's 3^3
convs at 64^3 (128 -> 128) and after pooling to 32^3 (1024 -> 1024), a 64^3 shell with 1024 channels,
and the mesh decoder's last level at 256^3 (96 -> 96, about 300 k voxels). The baseline is the dense
convolution of the same data, measured in the same process; where the whole grid would take too long or
too much memory, it runs on a slab of a few output planes and is scaled to the full depth (marked
"slab"; the dense cost is uniform along the depth). GFLOP/s count only useful multiply-adds: the sparse
one over the (voxel, neighbour) pairs that exist, the dense one over the whole grid.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from backend.nn.sparse_conv import SparseConv3d  # noqa: E402
from backend.nn.sparse_neighbors import build_kernel_map, kernel_map  # noqa: E402
from backend.nn.sparse_resample import sparse_downsample  # noqa: E402
from backend.nn.sparse_tensor import SparseTensor  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DENSE_FULL_GFLOP = {"cpu": 300.0, "cuda": 1e5, "mps": 2e4}
"Largest dense conv (GFLOP) timed on the whole grid; larger ones run on a slab."


def sphere_shell(res: int, radius: float, thickness: float) -> torch.Tensor:
    """Voxels of a res^3 grid within thickness/2 of a centred sphere: coords [N, 4] int32 (batch 0)."""
    ax = torch.arange(res, dtype=torch.float32) + 0.5 - res / 2
    dist = (ax[:, None, None] ** 2 + ax[None, :, None] ** 2 + ax[None, None, :] ** 2).sqrt()  # [R, R, R]
    xyz = torch.nonzero((dist - radius).abs() < thickness / 2)  # [N, 3], lexicographic
    return torch.cat([torch.zeros_like(xyz[:, :1]), xyz], dim=1).int()  # [N, 4]


def timed(fn: Callable[[], object], device: torch.device, repeat: int) -> float:
    """Best wall time of ``repeat`` runs after one warm-up (synchronised on accelerators)."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()
        elif device.type == "mps":
            torch.mps.synchronize()

    fn()
    sync()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def dense_time(res: int, c_in: int, c_out: int, weight: torch.Tensor, repeat: int) -> tuple[float, str]:
    """Seconds of F.conv3d (padding 1) over a full res^3 grid, or a slab scaled to it."""
    flops = 2.0 * res**3 * 27 * c_in * c_out / 1e9
    device = weight.device
    planes = res if flops <= DENSE_FULL_GFLOP[device.type] else max(1, int(res * 50.0 / flops))
    dense = torch.randn(1, c_in, planes + 2, res, res, device=device, dtype=weight.dtype)
    w = weight.permute(0, 4, 1, 2, 3).contiguous()  # KRSC -> [out, in, kD, kH, kW]
    seconds = timed(lambda: F.conv3d(dense, w, padding=(0, 1, 1)), device, repeat)
    return seconds * res / planes, "full" if planes == res else f"slab {planes}/{res}"


def bench_case(
    name: str,
    coords: torch.Tensor,
    res: int,
    c_in: int,
    c_out: int,
    dtype: torch.dtype,
    device: torch.device,
    repeat: int,
) -> None:
    """Time one conv shape on ``coords`` (sparse, kernel map cached) and its dense baseline; print a row."""
    coords = coords.to(device)
    n = coords.shape[0]
    build = timed(lambda: build_kernel_map(coords, 3), device, 1)
    conv = SparseConv3d(c_in, c_out, 3).to(device=device, dtype=dtype)
    x = SparseTensor(coords, torch.randn(n, c_in, device=device, dtype=dtype))
    pairs = kernel_map(x, 3).num_pairs + n  # (voxel, neighbour) pairs including the centre
    with torch.no_grad():
        sparse = timed(lambda: conv(x), device, repeat)
        dense, how = dense_time(res, c_in, c_out, conv.conv.weight, repeat)
    gflop = 2.0 * pairs * c_in * c_out / 1e9
    dense_gflop = 2.0 * res**3 * 27 * c_in * c_out / 1e9
    cols = [f"{name:<26}", f"{n:>8,}", f"{pairs / n:6.1f}", f"{build * 1e3:8.1f}", f"{sparse * 1e3:10.1f}"]
    cols += [f"{n / sparse / 1e3:8.0f}", f"{gflop / sparse:8.1f}", f"{dense * 1e3:11.1f}"]
    cols += [f"{dense_gflop / dense:8.1f}", f"{how:>12}", f"{dense / sparse:8.1f}x"]
    print(" ".join(cols))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="fp32 on cpu, fp16 otherwise")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype or ("fp32" if device.type == "cpu" else "fp16")]
    torch.manual_seed(0)
    shell64 = sphere_shell(64, 28.0, 2.0)
    pooled = sparse_downsample(SparseTensor(shell64, torch.zeros(len(shell64), 1))).coords
    shell256 = sphere_shell(256, 110.0, 2.0)
    print(f"device {device}, {dtype}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(
        f"{'case':<26} {'voxels':>8} {'nbrs':>6} {'map ms':>8} {'sparse ms':>10} {'kvox/s':>8} {'GFLOP/s':>8}"
        f" {'dense ms':>11} {'GFLOP/s':>8} {'dense run':>12} {'speed-up':>9}"
    )
    cases = [
        ("SLat 64^3 128->128", shell64, 64, 128, 128),
        ("SLat 32^3 1024->1024", pooled, 32, 1024, 1024),
        ("shell 64^3 1024->1024", shell64, 64, 1024, 1024),
        ("mesh dec 256^3 96->96", shell256, 256, 96, 96),
    ]
    for name, coords, res, c_in, c_out in cases:
        bench_case(name, coords, res, c_in, c_out, dtype, device, args.repeat)
    print("speed-up = dense F.conv3d time / sparse conv time; kernel map cached ('map ms': building it once)")


if __name__ == "__main__":
    main()
