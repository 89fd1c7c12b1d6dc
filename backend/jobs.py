"""Progress and cancellation for one request, passed explicitly to engines and samplers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import Cancelled

ProgressFn = Callable[[str, int, int, str], None]


def _no_report(stage: str, step: int, total: int, message: str) -> None:
    return None


@dataclass
class JobContext:
    """What a running request may do besides computing: report progress and notice a cancel.

    ``step`` reports progress and raises ``Cancelled`` when the client asked to stop, so every
    progress point is also a cancel point.
    """

    report: ProgressFn = _no_report
    cancel_event: threading.Event = field(default_factory=threading.Event)

    def step(self, stage: str, step: int, total: int, message: str = "") -> None:
        """Report ``step`` of ``total`` in ``stage``; raise ``Cancelled`` if cancel was requested."""
        self.check()
        self.report(stage, step, total, message)

    def check(self) -> None:
        """Raise ``Cancelled`` if the client asked to stop."""
        if self.cancel_event.is_set():
            raise Cancelled("Generation cancelled.", hint="Start it again when ready.")

    def stepper(self, stage: str) -> Callable[[int, int], None]:
        """A ``(step, total)`` callback for plain functions such as samplers."""
        return lambda i, n: self.step(stage, i, n)
