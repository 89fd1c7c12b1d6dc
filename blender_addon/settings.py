"""Plain settings objects of the add-on (no bpy): how to start the backend and what to generate.

Operators and the public API build these from Blender properties or arguments, then hand them to the
bpy-free client and job code. Environment variables are read only inside functions, never at import.
"""

from __future__ import annotations

import json
import math
import os
import shlex
from dataclasses import dataclass, field
from typing import Any

ENV_PYTHON = "HI3DGEN_PYTHON"
"Environment variable naming the backend interpreter; it overrides the preference."
DEVICES = ("auto", "cuda", "mps", "cpu")
SHADINGS = ("AUTO", "SMOOTH", "FLAT", "NORMALS")
AUTO_SMOOTH_DEGREES = 30.0
"AUTO shading: smooth, with edges sharper than this kept sharp (Blender's Shade Auto Smooth default)."


@dataclass(frozen=True)
class BackendConfig:
    """How to start the backend process: ``[*prefix, python, -m, backend, serve]``."""

    python: str
    "The interpreter that has torch and the backend's requirements installed."
    backend_root: str
    "The folder that contains the ``backend`` package (goes on PYTHONPATH)."
    prefix: tuple[str, ...] = ()
    "Optional argv prefix for a remote machine, e.g. ('ssh', 'gpu-box'); the backend then runs there."
    remote_root: str = ""
    "With a prefix: the folder holding ``backend/`` on the remote machine (empty: its own PYTHONPATH)."
    device: str = "auto"
    weights_dir: str = ""
    allow_download: bool = False
    hello_timeout: float = field(default=120.0, compare=False)
    "Seconds to wait for the handshake (the first start imports torch, which can take a while)."
    hang_timeout: float = field(default=15.0, compare=False)
    "Seconds without any frame (pings included) while busy after which the backend counts as hung."
    extra_env: tuple[tuple[str, str], ...] = ()
    "More environment variables for the backend (tests use it for HI3DGEN_FAULT and test engines)."
    argv: tuple[str, ...] = ()
    "A whole command to run instead of ``python -m backend serve`` (tests, custom launchers)."

    def backend_env(self) -> dict[str, str]:
        """The HI3DGEN_* and Python variables the backend needs (without the inherited environment)."""
        env = {"PYTHONUNBUFFERED": "1", "HI3DGEN_DEVICE": self.device,
               "HI3DGEN_ALLOW_DOWNLOAD": "1" if self.allow_download else "0"}
        root = self.remote_root if self.prefix else self.backend_root
        if root:
            env["PYTHONPATH"] = root
        if self.weights_dir:
            env["HI3DGEN_WEIGHTS"] = self.weights_dir
        env.update(dict(self.extra_env))
        return env

    def command(self) -> list[str]:
        """The argv that starts the backend."""
        argv = list(self.argv) or [self.python, "-m", "backend", "serve"]
        if not self.prefix:
            return argv
        # ssh joins its arguments into one line for a remote shell: quote there so paths with spaces survive;
        # other prefixes (wsl, docker exec, ...) pass arguments on as they are
        quote = shlex.quote if os.path.basename(self.prefix[0]).startswith("ssh") else str
        assignments = [quote(f"{k}={v}") for k, v in sorted(self.backend_env().items())]
        return [*self.prefix, "env", *assignments, *(quote(a) for a in argv)]

    def process_env(self, inherited: dict[str, str]) -> dict[str, str]:
        """The environment of the local child process."""
        env = dict(inherited)
        env.pop("PYTHONHOME", None)  # Blender's own Python home must not leak into another interpreter
        if not self.prefix:
            old = inherited.get("PYTHONPATH", "")
            env.update(self.backend_env())
            if old and self.backend_root:
                env["PYTHONPATH"] = self.backend_root + os.pathsep + old
        return env


@dataclass
class GenerateSettings:
    """One generation request as the add-on sends it."""

    image_name: str
    image_bytes: bytes | None = None
    "The encoded image file; read here so the same request works against a remote backend."
    image_path: str = ""
    "Used only when ``image_bytes`` is None (the backend then reads the file itself)."
    engine: str = "relief"
    seed: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    strict_params: bool = True
    "True: send ``params`` as given (unknown names are errors). False: keep the names the engine declares."
    device: str = "auto"
    want_normal_map: bool = True
    mask_bytes: bytes | None = None
    "An encoded mask image (white or opaque = the object); it replaces the image's alpha in the backend."


@dataclass(frozen=True)
class BuildOptions:
    """How the received mesh becomes Blender data."""

    shading: str = "AUTO"
    "AUTO (smooth by angle), SMOOTH, FLAT, or NORMALS (the backend's custom normals when it sent them)."
    with_material: bool = False
    "Make a material with the normal map (needs the backend's normal map and UVs)."
    collection: str = "Hi3DGen"


def resolve_python(preference: str, environ: dict[str, str] | None = None) -> str:
    """The backend interpreter: $HI3DGEN_PYTHON if set, else the preference ('' if neither)."""
    env = os.environ if environ is None else environ
    return (env.get(ENV_PYTHON) or preference or "").strip()


def split_prefix(text: str) -> tuple[str, ...]:
    """Parse the remote-command preference ('ssh gpu-box') into an argv prefix."""
    return tuple(shlex.split(text)) if text.strip() else ()


def python_problem(python: str, prefix: tuple[str, ...] = ()) -> str:
    """A sentence telling the user what is wrong with the interpreter setting, or '' if it looks usable."""
    if not python:
        return ("No backend Python is set. Install the backend (see README), then set Preferences > "
                f"Add-ons > Hi3DGen > Backend Python, or the {ENV_PYTHON} environment variable.")
    if prefix:
        return ""  # a remote path cannot be checked from here
    if not os.path.isfile(python):
        return f"Backend Python '{python}' does not exist. Point the preference at the backend venv's python."
    if not os.access(python, os.X_OK):
        return f"Backend Python '{python}' is not executable."
    return ""


def find_backend_root(addon_dir: str) -> str:
    """The folder holding the ``backend`` package: the add-on folder (built zip) or its parent (repo)."""
    for folder in (addon_dir, os.path.dirname(addon_dir)):
        if os.path.isfile(os.path.join(folder, "backend", "protocol.py")):
            return folder
    return addon_dir


def engine_params(engine: dict[str, Any] | None, values: dict[str, Any]) -> dict[str, Any]:
    """Keep the values the engine declares in the handshake, converted to the declared types."""
    if engine is None:
        return dict(values)
    out: dict[str, Any] = {}
    for spec in engine.get("params", []):
        name = spec.get("name")
        if name in values:
            out[name] = _convert(spec, values[name])
    return out


def _convert(spec: dict[str, Any], value: Any) -> Any:
    """The value as the declared type where that loses nothing; else as it is (the backend refuses it)."""
    kind = spec.get("type")
    if kind == "bool" and isinstance(value, int) and value in (0, 1):  # 0 and 1 from scripts, as bool
        return bool(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    if kind == "int" and isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if kind == "float" and isinstance(value, int) and abs(value) < 2**1000:
        return float(value)
    return value


def parse_params_json(text: str) -> dict[str, Any] | None:
    """Engine parameters typed as JSON: an object, or None when ``text`` is blank; ``ValueError`` otherwise."""
    if not text.strip():
        return None
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"The parameters are not valid JSON ({exc}). Write them as an object, "
                         'e.g. {"resolution": 128}.') from None
    if not isinstance(value, dict):
        raise ValueError(f"The parameters must be a JSON object of names and values, e.g. "
                         f'{{"resolution": 128}}, not {_json_kind(value)}.')
    return checked_params(value)


def checked_params(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` unchanged if every number in it is finite; ``ValueError`` naming the first that is not."""
    for name, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"Parameter '{name}' is {value}; use a finite number.")
    return values


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number the backend accepts")


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "true/false", int: "a number", float: "a number", str: "a string", list: "a list"}.get(
        type(value), type(value).__name__)


def image_name_from_path(path: str) -> str:
    """Object name for an image file: its stem ('photos/cat.png' -> 'cat')."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return stem or "image"
