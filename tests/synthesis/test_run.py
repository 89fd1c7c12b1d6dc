"""A whole run end to end, and resuming: after an injected crash or a SIGKILL the output equals one clean run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from backend.errors import BadInput
from synthesis.config import load_config
from synthesis.pipeline import run
from synthesis.reader import iter_samples, load_manifest
from synthesis.tasks import LocalExecutor

from .conftest import TINY_TOML, tiny_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clean") / "out"
    run(tiny_config(), out, progress=False)
    return out


def snapshot(out: Path) -> dict[str, object]:
    """Every output file: the dataset byte for byte; work files by name and loaded arrays (npz has dates)."""
    files: dict[str, object] = {}
    for path in sorted(out.rglob("*")):
        if not path.is_file():
            continue
        rel = str(path.relative_to(out))
        if path.suffix == ".npz":
            with np.load(path) as data:
                files[rel] = {k: data[k].tobytes() for k in data.files}
        else:
            files[rel] = path.read_bytes()
    return files


def test_a_run_makes_a_dataset_the_reader_reads(clean_run):
    manifest = load_manifest(clean_run / "dataset")
    judged, rejected = manifest["filters"]["judged_assets"], manifest["filters"]["rejected_assets"]
    assert judged == 6
    kept = sum(v["count"] for v in manifest["splits"].values())
    assert kept + rejected == 6 and kept > 0
    rejections = (clean_run / "dataset" / "rejections.jsonl").read_text().splitlines()
    assert len(rejections) == rejected
    ids = []
    for split in ("train", "val", "test"):
        for sample in iter_samples(clean_run / "dataset", split):
            ids.append(sample.id)
            assert sample.meta["split"] == split
            assert sample.occ_surface.shape == sample.occ_solid.shape == (32, 32, 32)
            assert sample.occ_surface.any() and sample.occ_solid.any()
            assert sample.points.shape == sample.normals.shape == (256, 3)
            assert np.abs(sample.points).max() <= 0.5 and sample.faces.dtype == np.int32
            assert sample.meta["images"] == ["view000.normal.png", "view001.normal.png"]
            assert len(sample.views) == 2 and sample.views[0].normal.shape == (64, 64, 3)
            assert sample.views[0].mask.any() and sample.views[0].camera["width"] == 64
    assert len(ids) == len(set(ids)) == kept
    assert "| train |" in (clean_run / "dataset" / "DATACARD.md").read_text()


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so no task-level handler swallows it."""


class DyingExecutor(LocalExecutor):
    """Reports ``allowed`` finished tasks, then dies once the next one has written its output."""

    def __init__(self, allowed: int) -> None:
        super().__init__(1)
        self.allowed = allowed

    def run(self, fn, keys):  # type: ignore[no-untyped-def]
        for key, error in super().run(fn, keys):
            if self.allowed == 0:
                raise Crash()
            self.allowed -= 1
            yield key, error


@pytest.mark.parametrize("allowed", [4, 9])  # dies in the generate stage; dies in the filter stage
def test_resume_after_a_crash_equals_a_clean_run(clean_run, tmp_path, allowed):
    out = tmp_path / "out"
    with pytest.raises(Crash):
        run(tiny_config(), out, executor=DyingExecutor(allowed), progress=False)
    assert not (out / "dataset" / "manifest.json").exists()
    stale = out / "work" / "meshes" / ".organic-00002.npz.0badc0de.tmp"
    stale.write_bytes(b"half a file")  # what a hard kill mid-write leaves
    summary = run(tiny_config(), out, progress=False)
    assert summary.reports[0].skipped == min(allowed + 1, 6)
    assert snapshot(out) == snapshot(clean_run)


def test_resume_after_sigkill_equals_a_clean_run(clean_run, tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TOML)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "synthesis", "run", "--config", str(config), "--out", str(out), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300  # a safety net for a hung child, not a speed check
    while len(list((out / "work" / "meshes").glob("*.npz"))) < 3 and proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the run made no progress")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert snapshot(out) == snapshot(clean_run)


def test_a_folder_of_another_config_is_refused(clean_run, tmp_path):
    with pytest.raises(BadInput, match="another configuration"):
        run(tiny_config(seed=8), clean_run, progress=False)
    (tmp_path / "x").write_text("x")
    with pytest.raises(BadInput, match="not empty"):
        run(tiny_config(), tmp_path, progress=False)


def test_the_tiny_config_loads_and_bad_configs_say_what_to_fix(tmp_path):
    assert sum(g.count for g in load_config(REPO / "synthesis/configs/tiny.toml").generators) == 20
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY_TOML.replace("retries = 0", "retries = 0\nworkerz = 2"))
    with pytest.raises(BadInput, match="workerz"):
        load_config(bad)
    with pytest.raises(BadInput, match="kind"):
        tiny_config(generators=[{"kind": "teapot", "count": 1}])


def test_an_image_generator_without_weights_is_a_note_in_the_data_card(tmp_path):
    from backend.settings import BackendSettings

    (tmp_path / "images").mkdir()
    gens = [{"kind": "hard_surface", "count": 1, "resolution": 48},
            {"kind": "image_to_3d", "count": 5, "images": str(tmp_path / "images")}]
    summary = run(tiny_config(generators=gens), tmp_path / "out", progress=False,
                  settings=BackendSettings(weights_dir=str(tmp_path / "none")))
    assert summary.notes and "image_to_3d skipped" in summary.notes[0]
    assert "image_to_3d skipped" in (tmp_path / "out" / "dataset" / "DATACARD.md").read_text()
