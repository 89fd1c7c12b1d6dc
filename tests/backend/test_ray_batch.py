"""The batch on a local Ray (2 CPUs): 20 relief results equal to the local batch's bytes, a killed worker's
image retried, a killed driver resumed by a re-run that makes only the missing images."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from backend.batch import BatchJob, run_batch
from backend.farm_batch import DONE_DIR, run_batch_ray
from backend.settings import BackendSettings

from .conftest import REPO, blob_rgba, png_bytes

ray = pytest.importorskip("ray")
from backend.farm import Farm, FarmConfig, init_local  # noqa: E402

COUNT = 20
PARAMS = {"resolution": 64}


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    """20 images of different sizes; the last has the first's stem (``img00-2``) and the first is the slowest,
    so Ray finishes them out of order and must still name them as the local batch does."""
    folder = tmp_path_factory.mktemp("images")
    (folder / "dup").mkdir()
    paths = []
    for i in range(COUNT):
        paths.append(folder / ("dup/img00.png" if i == COUNT - 1 else f"img{i:02d}.png"))
        paths[-1].write_bytes(png_bytes(blob_rgba(512 if i == 0 else 96 + 2 * i)))
    return paths


@pytest.fixture(scope="module")
def local_out(images, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "out"
    job = BatchJob(images=images, output=out, params=PARAMS)
    assert run_batch(job, BackendSettings(device="cpu"), show_progress=False) == []
    return out


def outputs(out: Path) -> dict[str, bytes]:
    files = {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}
    assert len(files) == 2 * COUNT and "img00-2.glb" in files
    return files


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "backend", "generate", *args]


def test_a_killed_driver_resumes_and_the_rerun_makes_only_the_missing_images(images, local_out, tmp_path):
    # first in the file: its Ray is the subprocess's own, started before this module's shared session
    out = tmp_path / "out"
    command = cli(*map(str, images), "-o", str(out), "--param", "resolution=64", "--device", "cpu", "--ray", "auto")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + 400  # a safety net for a hung child, not a speed check
    while len(list((out / DONE_DIR).glob("*.json"))) < 4 and proc.poll() is None:
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("the Ray batch made no progress")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # the driver only: Ray's own processes go with it
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    finished = {p.name: p.stat().st_mtime_ns for p in (out / DONE_DIR).glob("*.json")}
    assert 4 <= len(finished) < COUNT
    (out / ".img07.glb.0badc0de.tmp").write_bytes(b"half a file")  # what a kill mid-write leaves
    (out / DONE_DIR / ".0123.json.0badc0de.tmp").write_bytes(b"{")
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"note: {len(finished)} of {COUNT} images were finished by an earlier run (skipped)" in done.stderr
    records = {p.name: p.stat().st_mtime_ns for p in (out / DONE_DIR).glob("*.json")}
    assert len(records) == COUNT and all(records[name] == t for name, t in finished.items())
    assert not list((out / DONE_DIR).glob(".*"))
    assert outputs(out) == outputs(local_out)  # no stray temporaries, every file complete
    again = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and f"{COUNT} of {COUNT} images were finished" in again.stderr


@pytest.fixture(scope="module")
def session():
    init_local(num_cpus=2)
    yield
    ray.shutdown()


def test_twenty_images_through_ray_with_a_worker_killed_equal_the_local_batch(session, images, local_out, tmp_path):
    out = tmp_path / "out"
    job = BatchJob(images=[*images, tmp_path / "missing.png"], output=out, params=PARAMS)
    killer = threading.Thread(target=kill_one_worker, args=(out / DONE_DIR,), daemon=True)
    killer.start()
    report = run_batch_ray(job, BackendSettings(device="cpu"), FarmConfig(progress=False))
    killer.join()
    assert [(p.name, r.split(":")[0]) for p, r in report.failures] == [("missing.png", "Image file not found")]
    assert report.generated == COUNT and report.retried, "the killed worker's images were tried again"
    assert outputs(out) == outputs(local_out)
    rerun = run_batch_ray(job, BackendSettings(device="cpu"), FarmConfig(progress=False))
    assert rerun.skipped == COUNT and rerun.generated == 0 and len(rerun.failures) == 1


def kill_one_worker(records: Path) -> None:
    """SIGKILL one busy Ray worker once the first image is finished (each worker has images queued)."""
    import psutil

    deadline = time.monotonic() + 400
    while not any(records.glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.02)
    workers = [p for p in psutil.Process().children(recursive=True) if "_Worker" in " ".join(_cmdline(p))]
    assert workers, "no Ray worker process found"
    workers[0].send_signal(signal.SIGKILL)


def _cmdline(p) -> list[str]:  # noqa: ANN001
    try:
        return p.cmdline()
    except Exception:  # noqa: BLE001 - a process that just ended
        return []


def square(state: int, item: int) -> int:
    if item == 3:
        raise ValueError("three is refused")
    return state * item * item


def test_the_farm_keeps_state_and_retries_a_raising_item_a_bounded_number_of_times(session):
    with Farm(lambda: 10, FarmConfig(retries=1, progress=False)) as farm:
        outcomes = sorted(farm.map(square, range(6)), key=lambda o: o.index)
    assert [o.value for o in outcomes] == [0, 10, 40, None, 160, 250]
    assert outcomes[3].error == "ValueError: three is refused" and outcomes[3].attempts == 2
    assert not outcomes[3].crashed and all(o.attempts == 1 for o in outcomes if o.index != 3)


def test_an_unreachable_cluster_or_a_missing_ray_is_one_clear_line(images, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(cli(str(images[0]), "-o", str(tmp_path / "a"), "--ray", "127.0.0.1:1"), cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "error: Cannot reach the Ray cluster at 127.0.0.1:1" in done.stderr
    no_ray = ("import sys; sys.modules['ray'] = None; from backend.cli import main; "
              f"sys.exit(main(['generate', {str(images[0])!r}, '-o', {str(tmp_path / 'b')!r}, '--ray', 'auto']))")
    done = subprocess.run([sys.executable, "-c", no_ray], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "needs the ray package" in done.stderr and "Traceback" not in done.stderr
