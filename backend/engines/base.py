"""What an engine is: declared parameters, weights status, and generate / normals on one request."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from ..devices import Placement
from ..errors import BadInput
from ..images import LoadedImage
from ..jobs import JobContext


@dataclass(frozen=True)
class ParamSpec:
    """One engine parameter as the add-on shows it and the backend validates it."""

    name: str
    type: str  # "int" | "float" | "bool" | "enum"
    default: Any
    description: str
    min: float | None = None
    max: float | None = None
    options: tuple[str, ...] = ()

    def check(self, value: Any) -> Any:
        """Return ``value`` converted to this parameter's type, or raise ``BadInput``."""
        try:
            if self.type == "bool":
                if not isinstance(value, (bool, int)):
                    raise TypeError
                return bool(value)
            if self.type == "enum":
                if value not in self.options:
                    raise ValueError
                return value
            number = int(value) if self.type == "int" else float(value)
            if isinstance(value, bool) or (self.type == "int" and number != value):
                raise TypeError
        except (TypeError, ValueError):
            raise BadInput(f"Parameter '{self.name}' cannot be {value!r}.", hint=self._hint()) from None
        if (self.min is not None and number < self.min) or (self.max is not None and number > self.max):
            raise BadInput(f"Parameter '{self.name}'={value} is out of range.", hint=self._hint())
        return number

    def _hint(self) -> str:
        if self.type == "enum":
            return f"Use one of: {', '.join(self.options)}."
        if self.min is not None or self.max is not None:
            return f"Use a {self.type} between {self.min} and {self.max}."
        return f"Use a {self.type}."

    def to_wire(self) -> dict[str, Any]:
        d = asdict(self)
        d["options"] = list(self.options)
        return d


def validate_params(specs: tuple[ParamSpec, ...], params: dict[str, Any]) -> dict[str, Any]:
    """Check ``params`` against ``specs``; unknown names are refused, missing ones take their defaults."""
    known = {s.name: s for s in specs}
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise BadInput(f"Unknown parameter(s): {', '.join(unknown)}.",
                       hint=f"Known parameters: {', '.join(known)}.")
    return {name: spec.check(params[name]) if name in params else spec.default for name, spec in known.items()}


@dataclass
class MeshData:
    """One output mesh in Blender's frame (+Z up, facing -Y)."""

    name: str
    vertices: np.ndarray  # [V, 3] float32
    faces: np.ndarray  # [F, 3] int32
    normals: np.ndarray | None = None  # [V, 3] float32
    uvs: np.ndarray | None = None  # [V, 2] float32


@dataclass
class NormalMapData:
    """Camera-space unit normals [H, W, 3] (+X right, +Y up, +Z to viewer) and the mask [H, W]."""

    normals: np.ndarray
    mask: np.ndarray


@dataclass
class EngineRequest:
    """A validated request: decoded image, parameters with defaults filled, and where to run."""

    image: LoadedImage
    name: str
    seed: int
    params: dict[str, Any]
    placement_name: str = "auto"
    normal_map: LoadedImage | None = None


@dataclass
class EngineResult:
    meshes: list[MeshData] = field(default_factory=list)
    normal_map: NormalMapData | None = None
    stats: dict[str, Any] = field(default_factory=dict)


class Engine(Protocol):
    """An engine turns a request into meshes and/or a normal map, reporting progress through ``ctx``."""

    name: str
    label: str
    description: str
    params: tuple[ParamSpec, ...]

    def status(self) -> dict[str, Any]:
        """{available, weights_present, missing} for the handshake."""
        ...

    def generate(self, request: EngineRequest, ctx: JobContext) -> EngineResult: ...

    def normals(self, request: EngineRequest, ctx: JobContext) -> EngineResult: ...

    def release(self) -> None:
        """Drop loaded models."""
        ...


def describe(engine: Engine) -> dict[str, Any]:
    """The engine's entry in the handshake."""
    return {"name": engine.name, "label": engine.label, "description": engine.description,
            "params": [p.to_wire() for p in engine.params], **engine.status()}


def placement_for(name: str) -> Placement:
    from ..devices import choose_placement

    return choose_placement(name)
