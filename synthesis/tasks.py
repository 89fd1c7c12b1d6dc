"""Run many independent, idempotent tasks with retries, resume and a progress bar.

A task is ``fn(key)`` for a string key (an asset id). It must write its output atomically and is done
exactly when ``is_done(key)`` says so (its output exists), so a killed run loses at most the tasks in
flight and a rerun skips the rest. ``run_tasks`` is the one entry point; where the tasks run is an
``Executor``: ``LocalExecutor`` now (in this process, or a process pool), a Ray executor later with the same
two methods (DESIGN.md: one Ray helper; local execution is the same code with Ray absent).
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Protocol

TaskFn = Callable[[str], object]


class Executor(Protocol):
    def run(self, fn: TaskFn, keys: list[str]) -> Iterator[tuple[str, str]]:
        """Run ``fn`` on every key; yield ``(key, error)`` as each finishes (error: "" on success)."""
        ...

    def close(self) -> None: ...


@dataclass
class TaskReport:
    stage: str
    total: int
    skipped: int = 0
    "Already done before this call (resumed)."
    done: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    "key -> the last attempt's error, after every retry failed."


def run_tasks(stage: str, keys: Iterable[str], fn: TaskFn, is_done: Callable[[str], bool],
              executor: Executor, retries: int = 1, progress: bool = True) -> TaskReport:
    """Run ``fn`` on every key not yet done, retrying a failing key up to ``retries`` more times."""
    keys = list(dict.fromkeys(keys))  # each key once, in the given order
    todo = [k for k in keys if not is_done(k)]
    report = TaskReport(stage, len(keys), skipped=len(keys) - len(todo))
    bar = _bar(stage, len(keys), report.skipped, progress)
    attempt = 0
    while todo:
        errors: dict[str, str] = {}
        for key, error in executor.run(fn, todo):
            if error:
                errors[key] = error
            else:
                report.done += 1
                bar.update(1)
        todo = [k for k in todo if k in errors]
        attempt += 1
        if attempt > retries:
            report.failed = {k: errors[k] for k in todo}
            break
    bar.close()
    return report


class LocalExecutor:
    """Tasks in this process (``workers == 1``) or in a pool of ``workers`` processes (``fn`` must pickle)."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def run(self, fn: TaskFn, keys: list[str]) -> Iterator[tuple[str, str]]:
        if self.workers == 1:
            for key in keys:
                yield key, _call(fn, key)
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers)
        pending: dict[Future[str], str] = {}
        queue = list(reversed(keys))
        while queue or pending:
            while queue and len(pending) < 2 * self.workers:  # a bounded window: memory stays flat
                key = queue.pop()
                pending[self._pool.submit(_call, fn, key)] = key
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                yield pending.pop(future), future.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


def _call(fn: TaskFn, key: str) -> str:
    """Run one task; an exception becomes its one-line summary plus the traceback's last frame."""
    try:
        fn(key)
    except Exception as exc:  # noqa: BLE001 - any failure of one task is data for the report, not a crash
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        return f"{type(exc).__name__}: {exc} (at {frame.filename}:{frame.lineno})"
    return ""


class _NoBar:
    def update(self, n: int) -> None: ...

    def close(self) -> None: ...


def _bar(stage: str, total: int, initial: int, progress: bool) -> _NoBar:
    if not progress:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=f"{stage:>9}", unit="asset", file=sys.stderr,  # type: ignore[return-value]
                dynamic_ncols=True, mininterval=0.5)
