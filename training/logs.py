"""Run logs: one JSON object per logged step in ``<out>/log.jsonl`` (the record tests and scripts read),
mirrored as TensorBoard scalars under ``<out>/tensorboard`` when the ``tensorboard`` package is installed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from backend.atomic import write_atomic


class RunLog:
    """Appends step records; only the main process writes."""

    def __init__(self, out: Path, enabled: bool, tensorboard: bool = True) -> None:
        self.path = Path(out) / "log.jsonl"
        self.enabled = enabled
        self._writer: Any = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard not installed: the JSONL log alone
                SummaryWriter = None  # noqa: N806
            if SummaryWriter is not None:
                self._writer = SummaryWriter(str(Path(out) / "tensorboard"))

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step`` (a resumed run rewrites what the stopped one logged after its checkpoint)."""
        if not self.enabled or not self.path.is_file():
            return
        kept = [line for line in self.path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line)["step"] <= step]
        text = "".join(line + "\n" for line in kept)
        write_atomic(self.path, lambda tmp: tmp.write_text(text, encoding="utf-8"))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self._writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self._writer.add_scalar(f"train/{key}", value, record["step"])

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def read_log(out: Path) -> list[dict[str, Any]]:
    """The records of ``<out>/log.jsonl`` in order."""
    path = Path(out) / "log.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
