"""The whole ``python -m backend generate`` process on the bundled example, against interpreter start-up.

Run: .venv/bin/python bench/bench_cli.py [--runs 5]
Times, as the median of a few runs each: ``python -c "import torch"`` (the baseline: interpreter and torch
start-up, which every CLI call pays), ``python -m backend --version`` (the CLI's own start-up, no torch),
and ``python -m backend generate examples/suzanne.png`` (512 px RGBA, relief engine, default 256-cell grid,
GLB + normal map written; this path never imports torch). Prints each median and its ratio to the baseline.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGE = REPO / "examples" / "suzanne.png"


def median_seconds(command: list[str], runs: int) -> float:
    """Median wall time of ``runs`` runs of ``command`` (one untimed warm-up run first, for the file cache)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    times = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        subprocess.run(command, cwd=REPO, env=env, check=True, capture_output=True, timeout=600)
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    py = sys.executable
    with tempfile.TemporaryDirectory() as out:
        rows = [
            ("python -c 'import torch' (baseline)", [py, "-c", "import torch"]),
            ("python -m backend --version", [py, "-m", "backend", "--version"]),
            ("python -m backend generate suzanne.png", [py, "-m", "backend", "generate", str(IMAGE), "-o", out]),
        ]
        results = [(label, median_seconds(command, runs)) for label, command in rows]
    base = results[0][1]
    print(f"median of {runs} runs, {os.cpu_count()} CPUs")
    for label, seconds in results:
        print(f"{label:<42} {seconds:7.3f} s  {seconds / base:5.2f}x import torch")


if __name__ == "__main__":
    main()
