"""Relief-engine seconds per megapixel, and mesh throughput through the real backend pipe.

Run: .venv/bin/python bench/bench_relief_protocol.py
Ratios are against baselines measured in the same process: the relief engine against the PNG decode of
the same image, the pipe against a plain in-process copy of the same arrays.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from backend import protocol as P  # noqa: E402
from backend.engines.base import EngineRequest, validate_params  # noqa: E402
from backend.engines.relief import ReliefEngine  # noqa: E402
from backend.images import decode_image  # noqa: E402
from backend.jobs import JobContext  # noqa: E402


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_relief() -> None:
    img = np.asarray(Image.open(REPO / "examples" / "suzanne.png").convert("RGBA"))
    engine = ReliefEngine()
    print(f"{'image':>10} {'MP':>6} {'res':>5} {'relief s':>9} {'s/MP':>6} {'faces':>9} {'x PNG decode':>13}")
    for side in (512, 1024, 2048):
        data = io.BytesIO()
        Image.fromarray(img).resize((side, side), Image.Resampling.LANCZOS).save(data, "PNG")
        raw = data.getvalue()
        decode = best_of(lambda raw=raw: decode_image(raw))
        for res in (256, 512):
            request = EngineRequest(decode_image(raw), "bench", 0, validate_params(engine.params, {"resolution": res}))
            faces = len(engine.generate(request, JobContext()).meshes[0].faces)
            t = best_of(lambda request=request: engine.generate(request, JobContext()))
            mp = side * side / 1e6
            print(f"{side:>5}x{side:<4} {mp:6.2f} {res:5d} {t:9.3f} {t / mp:6.2f} {faces:9d} {t / decode:12.1f}x")


def bench_pipe(n_faces: int = 2_000_000) -> None:
    rng = np.random.default_rng(0)
    v = rng.random((n_faces // 2, 3), dtype=np.float32)
    f = rng.integers(0, len(v), (n_faces, 3), dtype=np.int32)
    mb = (v.nbytes + f.nbytes) / 1e6
    copy = best_of(lambda: (v.copy(), f.copy()), 5)
    frames = list(P.mesh_frames(0, "m", {"vertices": v, "faces": f}))
    child = subprocess.Popen([sys.executable, "-c", _CAT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    assert child.stdout.read(1) == b"R"  # the child has built its arrays
    t0 = time.perf_counter()
    child.stdin.write(b"go")
    child.stdin.flush()
    reader = P.FrameReader(child.stdout)
    asm = P.MeshAssembly(reader.read()[0])
    for _ in range(len(frames) - 1):
        asm.add(reader.read()[0])
    asm.finish()
    pipe = time.perf_counter() - t0
    child.stdin.close()
    child.wait()
    print(f"\nmesh of {n_faces:,} faces ({mb:.0f} MB): in-process copy {copy * 1e3:.1f} ms ({mb / copy:,.0f} MB/s)")
    print(f"encode + pipe + decode + CRC {pipe * 1e3:.0f} ms ({mb / pipe:,.0f} MB/s) = {copy / pipe:.3f} x memcpy")


# the child builds the same mesh, streams it with the real protocol code, and exits
_CAT = """
import sys, numpy as np
from backend import protocol as P
rng = np.random.default_rng(0)
v = rng.random((1_000_000, 3), dtype=np.float32)
f = rng.integers(0, len(v), (2_000_000, 3), dtype=np.int32)
sys.stdout.buffer.write(b"R"); sys.stdout.buffer.flush()
sys.stdin.buffer.read(2)
w = P.FrameWriter(sys.stdout.buffer)
for m in P.mesh_frames(0, "m", {"vertices": v, "faces": f}):
    w.send(m)
"""

if __name__ == "__main__":
    bench_relief()
    bench_pipe()
