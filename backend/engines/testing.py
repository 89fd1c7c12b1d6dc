"""A deliberately slow engine for protocol tests (cancel, hang detection); enabled by settings only."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..jobs import JobContext
from .base import EngineRequest, EngineResult, MeshData, ParamSpec


class SlowEngine:
    name = "test-slow"
    label = "Test: slow"
    description = "Steps slowly, then returns a tetrahedron. For tests only."
    params = (ParamSpec("steps", "int", 50, "How many steps.", 1, 10_000),
              ParamSpec("step_seconds", "float", 0.1, "Seconds per step.", 0.0, 10.0))

    def status(self) -> dict[str, Any]:
        return {"available": True, "weights_present": True, "missing": []}

    def release(self) -> None:
        return None

    def normals(self, request: EngineRequest, ctx: JobContext) -> EngineResult:
        return self.generate(request, ctx)

    def generate(self, request: EngineRequest, ctx: JobContext) -> EngineResult:
        steps = request.params["steps"]
        for i in range(steps):
            ctx.step("sampling", i, steps)
            time.sleep(request.params["step_seconds"])
        v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
        f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], np.int32)
        return EngineResult(meshes=[MeshData(request.name, v, f)])
