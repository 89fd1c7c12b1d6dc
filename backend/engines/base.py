"""What an engine is: declared parameters, weights status, and generate / normals on one request."""

from __future__ import annotations

import math
import reprlib
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from ..devices import Placement
from ..errors import BadInput
from ..images import LoadedImage
from ..jobs import JobContext

MAX_SEED = 2**32 - 1
"Seeds are whole numbers in [0, 2^32 - 1]: the range every generator (torch, numpy) and the add-on accept."
MAX_SHOWN = 60
"Longest rendering of a refused value in an error message."
MAX_LISTED = 8


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
        """Return ``value`` as this parameter's type, or raise ``BadInput``.

        Only JSON's own types count: bools are ``true``/``false`` only, enums are strings among the
        options, numbers are never strings, never bools and always finite. An int parameter takes an
        integral float (``3.0``, as some JSON writers send it) and refuses any fraction.
        """
        if self.type == "bool":
            if not isinstance(value, bool):
                raise self._refuse(value)
            return value
        if self.type == "enum":
            if not isinstance(value, str) or value not in self.options:
                raise self._refuse(value)
            return value
        number = self._number(value)
        if (self.min is not None and number < self.min) or (self.max is not None and number > self.max):
            raise BadInput(f"Parameter '{self.name}'={_shown(value)} is out of range.", hint=self._hint())
        return number

    def _number(self, value: Any) -> int | float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._refuse(value)
        if isinstance(value, float) and not math.isfinite(value):
            raise self._refuse(value)
        if self.type == "float":
            try:
                return float(value)
            except OverflowError:  # an int beyond float's range
                raise self._refuse(value) from None
        if isinstance(value, float) and not value.is_integer():
            raise self._refuse(value)
        return int(value)

    def _refuse(self, value: Any) -> BadInput:
        return BadInput(f"Parameter '{self.name}' cannot be {_shown(value)}.", hint=self._hint())

    def _hint(self) -> str:
        if self.type == "enum":
            return f"Use one of: {', '.join(self.options)}."
        if self.type == "bool":
            return "Use true or false."
        if self.min is not None or self.max is not None:
            return f"Use a finite {self.type} between {self.min} and {self.max}."
        return f"Use a finite {self.type}."

    def to_wire(self) -> dict[str, Any]:
        d = asdict(self)
        d["options"] = list(self.options)
        return d


def validate_params(specs: tuple[ParamSpec, ...], params: Any) -> dict[str, Any]:
    """Check ``params`` against ``specs``; unknown names are refused, missing ones take their defaults."""
    known = {s.name: s for s in specs}
    if not isinstance(params, dict):
        raise BadInput(f"The parameters must be a JSON object (name: value), not {_kind(params)}.",
                       hint=f"Send an object such as {{\"{next(iter(known), 'name')}\": ...}}, or {{}} for defaults.")
    unknown = sorted(_shown(k) for k in params if k not in known)
    if unknown:
        more = len(unknown) - MAX_LISTED
        listed = ", ".join(unknown[:MAX_LISTED]) + (f" and {more} more" if more > 0 else "")
        raise BadInput(f"Unknown parameter(s): {listed}.", hint=f"Known parameters: {', '.join(known)}.")
    if "preset" in known and "preset" in params:  # a preset fills the parameters it governs that are absent
        from ..presets import expand_preset

        params = expand_preset(params, known["preset"].check(params["preset"]))
    return {name: spec.check(params[name]) if name in params else spec.default for name, spec in known.items()}


def check_seed(seed: Any) -> int:
    """The request's seed as an int in [0, MAX_SEED], or ``BadInput``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise BadInput(f"The seed cannot be {_shown(seed)}.", hint=f"Use a whole number from 0 to {MAX_SEED}.")
    return seed


def _shown(value: Any) -> str:
    """``repr`` of a value cut to a readable length (a client may send megabytes, or a 5000-digit number)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"a {value.bit_length()}-bit integer"
    short = reprlib.Repr()
    short.maxlevel, short.maxstring, short.maxother, short.maxlong = 2, MAX_SHOWN, MAX_SHOWN, MAX_SHOWN
    text = short.repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def _kind(value: Any) -> str:
    names = {list: "a list", str: "a string", bool: "a bool", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


@dataclass
class MeshData:
    """One output mesh in Blender's frame (+Z up, facing -Y)."""

    name: str
    vertices: np.ndarray  # [V, 3] float32
    faces: np.ndarray  # [F, 3] int32
    normals: np.ndarray | None = None  # [V, 3] float32
    uvs: np.ndarray | None = None  # [V, 2] float32
    baked: Any = None
    "Textures baked for these UVs (``result_textures.MeshImages``, hi3dgen's atlas); None: made from the result."


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
    views: tuple[LoadedImage, ...] = ()
    "More pictures of the same object (multi-view conditioning); ``image`` is the first view."
    view_angles: tuple[float, ...] = ()
    "Optional: each view's angle in degrees about the vertical axis (``image`` first); reported, not conditioned on."


@dataclass
class EngineResult:
    meshes: list[MeshData] = field(default_factory=list)
    normal_map: NormalMapData | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    base_color: np.ndarray | None = None
    "float32 RGBA [H, W, 4] in [0, 1] as the file held it (sRGB): the input over the normal map's frame."


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
