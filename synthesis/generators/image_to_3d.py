"""Image-to-3D assets: this project's own ``hi3dgen`` engine run on a folder of images.

A thin wrapper around ``backend.engines.hi3dgen``: usable when its weights are present, otherwise the run
skips it with a one-line note (``unavailable``) and the data card says so.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from backend.settings import BackendSettings

from ..mesh import Mesh

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


class ImageTo3DGenerator:
    name = "image_to_3d"
    licence = "that of the input images (see the folder they came from); meshes by the Hi3DGen weights' licence"

    def __init__(self, folder: str, settings: BackendSettings) -> None:
        self.folder = Path(folder)
        self.settings = settings
        self._engine: Any = None

    def __getstate__(self) -> dict[str, Any]:  # worker processes load their own engine
        return {**self.__dict__, "_engine": None}

    def images(self) -> dict[str, Path]:
        """asset id -> image file, for the regular image files of the folder, sorted by name."""
        if not self.folder.is_dir():
            return {}
        out: dict[str, Path] = {}
        for path in sorted(self.folder.iterdir()):
            if path.is_file() and not path.is_symlink() and path.suffix.lower() in IMAGE_SUFFIXES:
                stem = re.sub(r"[^A-Za-z0-9_-]", "_", path.stem)[:80]
                key = f"{self.name}-{stem}"
                while key in out:
                    key += "_"
                out[key] = path
        return out

    def asset_ids(self, count: int) -> list[str]:
        return list(self.images())[:count]

    def unavailable(self) -> str:
        if not self.folder.is_dir():
            return f"image_to_3d skipped: {self.folder} is not a folder."
        status = self._engine_instance().status()
        if not status["available"]:
            return (f"image_to_3d skipped: the hi3dgen weights are missing ({', '.join(status['missing'])}); "
                    "put them under HI3DGEN_WEIGHTS (see the README's weights section).")
        return ""

    def generate(self, asset_id: str, seed: int) -> Mesh:
        from backend.engines.base import EngineRequest, validate_params
        from backend.images import load_image
        from backend.jobs import JobContext

        engine = self._engine_instance()
        image = load_image(str(self.images()[asset_id]))
        request = EngineRequest(image=image, name=asset_id, seed=seed, params=validate_params(engine.params, {}))
        mesh = engine.generate(request, JobContext()).meshes[0]
        return Mesh(mesh.vertices, mesh.faces)

    def _engine_instance(self) -> Any:
        if self._engine is None:
            from backend.engines.hi3dgen import Hi3DGenEngine

            self._engine = Hi3DGenEngine(self.settings)
        return self._engine
