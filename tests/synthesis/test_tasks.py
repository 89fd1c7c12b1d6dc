"""The task runner: skip what is done, retry what fails, report what failed for good, same in a pool."""

from __future__ import annotations

from pathlib import Path

from backend.atomic import write_bytes_atomic
from synthesis.tasks import LocalExecutor, run_tasks


class Flaky:
    """Fails the first ``failures`` calls per key, then writes <key>.out."""

    def __init__(self, folder: Path, failures: int) -> None:
        self.folder, self.failures, self.calls = folder, failures, {}

    def __call__(self, key: str) -> None:
        self.calls[key] = self.calls.get(key, 0) + 1
        if self.calls[key] <= self.failures:
            raise RuntimeError(f"boom {key}")
        write_bytes_atomic(self.folder / f"{key}.out", key.encode())

    def done(self, key: str) -> bool:
        return (self.folder / f"{key}.out").is_file()


def test_done_keys_are_skipped_and_each_key_runs_once(tmp_path):
    task = Flaky(tmp_path, failures=0)
    (tmp_path / "b.out").write_text("b")
    report = run_tasks("t", ["a", "b", "c", "a"], task, task.done, LocalExecutor(), progress=False)
    assert (report.total, report.skipped, report.done, report.failed) == (3, 1, 2, {})
    assert task.calls == {"a": 1, "c": 1}


def test_a_failing_task_is_retried_then_reported(tmp_path):
    task = Flaky(tmp_path, failures=1)
    assert run_tasks("t", ["a"], task, task.done, LocalExecutor(), retries=1, progress=False).done == 1
    stubborn = Flaky(tmp_path, failures=5)
    report = run_tasks("t", ["z"], stubborn, stubborn.done, LocalExecutor(), retries=2, progress=False)
    assert stubborn.calls == {"z": 3} and list(report.failed) == ["z"]
    assert "RuntimeError: boom z" in report.failed["z"]


def _write(key_and_folder: str) -> None:
    folder, key = key_and_folder.rsplit("|", 1)
    write_bytes_atomic(Path(folder) / f"{key}.out", key.encode())


def test_a_process_pool_runs_every_key(tmp_path):
    keys = [f"{tmp_path}|k{i}" for i in range(6)]
    executor = LocalExecutor(workers=2)
    try:
        report = run_tasks("t", keys, _write, lambda k: False, executor, progress=False)
    finally:
        executor.close()
    assert report.done == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"k{i}.out" for i in range(6)]
