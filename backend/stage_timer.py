"""Seconds per stage of a run, for result stats: ``timer("name")`` records the time since the previous mark."""

from __future__ import annotations

import time


class StageTimer:
    """``timer(name)`` records the seconds since the previous mark as ``timings["<name>_seconds"]``;
    ``restart()`` moves the mark without recording (time spent in a part that keeps its own figures)."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._mark = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[f"{name}_seconds"] = now - self._mark
        self._mark = now

    def restart(self) -> None:
        self._mark = time.perf_counter()
