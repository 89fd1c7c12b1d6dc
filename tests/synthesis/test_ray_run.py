"""The synthesis run through a local Ray (2 CPUs, the backend's one Ray helper) makes the local run's data set."""

from __future__ import annotations

import pytest

from synthesis.pipeline import run

from .conftest import tiny_config
from .test_run import snapshot

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
