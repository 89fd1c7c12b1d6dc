"""Bounded soak: many generations and cancels against one backend; its memory must not keep growing.

Longer run: HI3DGEN_SOAK_ROUNDS=300 .venv/bin/python -m pytest tests/backend/test_soak.py -s
"""

from __future__ import annotations

import os

import numpy as np
import psutil

from backend import protocol as P

from .conftest import BackendProcess

ROUNDS = int(os.environ.get("HI3DGEN_SOAK_ROUNDS", "200"))  # about 30 s


def test_soak_generations_and_cancels(blob_png):
    proc = BackendProcess(env={"HI3DGEN_TEST_ENGINES": "1"})
    try:
        proc.expect(P.Hello)
        rss = []
        image = np.frombuffer(blob_png, np.uint8)
        for i in range(1, ROUNDS + 1):
            if i % 3 == 0:
                proc.send(P.Generate(engine="test-slow", params={"steps": 10_000, "step_seconds": 0.005},
                                     image_bytes=image), i)  # so long that only the cancel ends it
                proc.expect(P.Progress)
                proc.send(P.Cancel(), i)
                out = proc.collect(i)
                assert out["error"] is not None and out["error"].code == "cancelled"
            else:
                proc.send(P.Generate(image_bytes=image), i)
                assert proc.collect(i)["done"] is not None
            if i == 10 or i % 20 == 0:
                rss.append(psutil.Process(proc.proc.pid).memory_info().rss / 2**20)
        growth = rss[-1] - rss[0]
        print(f"soak: {ROUNDS} rounds, backend RSS {rss[0]:.0f} -> {rss[-1]:.0f} MiB (+{growth:.1f})")
        assert growth < 40, rss
    finally:
        proc.close()

