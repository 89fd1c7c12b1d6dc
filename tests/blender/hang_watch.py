"""Measures a hang the way the user sees it: from the last frame the job heard to the moment it gave up.

bpy-free: works on the add-on's ``Job`` class whether imported from the repository or from the installed
extension. Only a lower bound is asserted with it (a loaded machine only makes the silence longer).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest


@dataclass
class HangWatch:
    """When the running job last heard from its backend (or sent its request), and the silence it ended on."""

    heard_at: float = 0.0
    silence: float | None = None
    "Seconds from the last frame heard to the job declaring the backend hung; None until it does."


def watch_hangs(monkeypatch: pytest.MonkeyPatch, job_class: Any) -> HangWatch:
    """Record, on every job of ``job_class``, the last time it heard anything and the silence of a hang.

    Times are taken on the safe side of the job's own: the request's time before it is sent, each event's
    arrival time as the reader thread stamped it, and the hang's time after the job decided.
    """
    watch = HangWatch()
    start, feed, fail = job_class.start, job_class.feed, job_class._fail

    def start_and_note(self: Any) -> None:
        watch.heard_at = time.monotonic()
        start(self)

    def feed_and_note(self: Any, event: Any) -> None:
        watch.heard_at = max(watch.heard_at, event.at)
        feed(self, event)

    def fail_and_note(self: Any, failure: Any) -> None:
        if failure.code == "hung" and watch.silence is None:
            watch.silence = time.monotonic() - watch.heard_at
        fail(self, failure)

    monkeypatch.setattr(job_class, "start", start_and_note)
    monkeypatch.setattr(job_class, "feed", feed_and_note)
    monkeypatch.setattr(job_class, "_fail", fail_and_note)
    return watch
