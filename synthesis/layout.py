"""Where a run keeps its files under OUT (one place, so every stage and the resume logic agree)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_TEMP = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")
"The hidden temporary names backend/atomic.py writes before renaming."


@dataclass(frozen=True)
class Layout:
    out: Path

    @property
    def run_file(self) -> Path:
        return self.out / "run.json"

    @property
    def work(self) -> Path:
        return self.out / "work"

    @property
    def dataset(self) -> Path:
        return self.out / "dataset"

    def mesh(self, asset_id: str) -> Path:
        return self.work / "meshes" / f"{asset_id}.npz"

    def verdict(self, asset_id: str) -> Path:
        return self.work / "filters" / f"{asset_id}.json"

    def labels(self, asset_id: str) -> Path:
        return self.work / "labels" / f"{asset_id}.npz"

    def views(self, asset_id: str) -> Path:
        return self.work / "views" / f"{asset_id}.npz"

    def rgb(self, asset_id: str) -> Path:
        return self.work / "rgb" / f"{asset_id}.npz"

    def failure(self, stage: str, asset_id: str) -> Path:
        return self.work / "failed" / stage / f"{asset_id}.json"

    def folders(self) -> list[Path]:
        stages = ("generate", "filter", "labels", "views", "rgb")
        return ([self.work / name for name in ("meshes", "filters", "labels", "views", "rgb")]
                + [self.work / "failed" / stage for stage in stages] + [self.dataset])

    def remove_stale_temporaries(self) -> int:
        """Delete temporary files a killed run left behind (a completed file is never a temporary)."""
        removed = 0
        for folder in self.folders():
            if folder.is_dir():
                for path in folder.iterdir():
                    if _TEMP.match(path.name) and path.is_file():
                        path.unlink()
                        removed += 1
        return removed
