"""The synthesis run through a local Ray (2 CPUs, the backend's one Ray helper) makes the local run's data set."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from synthesis.pipeline import run

from .conftest import TINY_TOML, tiny_config
from .test_run import REPO, snapshot

ray = pytest.importorskip("ray")
from backend.farm import FarmConfig, FarmExecutor, init_local  # noqa: E402


def test_a_run_through_local_ray_gives_the_same_data_set_as_a_local_run(tmp_path):
    run(tiny_config(), tmp_path / "local", progress=False)
    init_local(num_cpus=2)
    try:
        summary = run(tiny_config(), tmp_path / "ray", executor=FarmExecutor(FarmConfig(progress=False)),
                      progress=False)
    finally:
        ray.shutdown()
    assert all(not r.failed for r in summary.reports)
    assert snapshot(tmp_path / "ray") == snapshot(tmp_path / "local")


def test_the_cli_takes_ray_and_an_unreachable_cluster_is_one_clear_line(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TOML)
    command = [sys.executable, "-m", "synthesis", "run", "--config", str(config), "--out", str(tmp_path / "out"),
               "--no-progress", "--ray", "127.0.0.1:1"]
    done = subprocess.run(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "error: Cannot reach the Ray cluster at 127.0.0.1:1" in done.stderr
    assert "Traceback" not in done.stderr
