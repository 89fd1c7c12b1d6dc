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
PREFIX_MODES = ("AUTO", "SHELL", "DIRECT")
"""How the Remote Command prefix hands on the backend command: AUTO detects it from the prefix's words;
SHELL: a remote shell parses one line (ssh, autossh, wsl), so the command goes as one shell-quoted string;
DIRECT: the prefix runs its arguments as they are (nice, env, timeout, docker exec)."""
REMOTE_SHELL_PROGRAMS = ("ssh", "autossh")
"Programs that join their arguments into one line for a shell on the other side (wsl too, without -e)."


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
    prefix_mode: str = "AUTO"
    "One of ``PREFIX_MODES``: whether the prefix hands its arguments to a shell that parses them again."
    prefix_problem: str = ""
    "Why the Remote Command preference could not be parsed ('' when it could); nothing starts then."

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
        inner = ["env", *(f"{k}={v}" for k, v in sorted(self.backend_env().items())), *argv]
        if self.remote_shell():
            # a remote shell parses the line once: one quoted string means it runs exactly this, whatever
            # the paths hold ($(...), quotes, spaces)
            return [*self.prefix, shlex.join(inner)]
        return [*self.prefix, *inner]

    def remote_shell(self) -> bool:
        """True when the prefix's arguments are parsed again by a shell (so they go as one quoted string)."""
        return prefix_is_shell(self.prefix, self.prefix_mode)

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
    "Receive the predicted camera-space normal map."
    want_textures: bool = True
    "Receive each UV-mapped mesh's material images (tangent-space normal texture, base colour)."
    mask_bytes: bytes | None = None
    "An encoded mask image (white or opaque = the object); it replaces the image's alpha in the backend."
    optional_params: dict[str, Any] = field(default_factory=dict)
    """Switches sent only when the backend's engine declares them (``align``, ``refine``, ``texture``), so
    one request suits older and newer backends; a name also in ``params`` takes that value."""
    view_bytes: list[bytes] = field(default_factory=list)
    "More views of the same object (encoded image files), after the image above (hi3dgen's multi-view input)."
    view_angles: list[float] = field(default_factory=list)
    "Each view's angle in degrees about the vertical axis, the image above first (empty: not known)."


@dataclass(frozen=True)
class BuildOptions:
    """How the received mesh becomes Blender data."""

    shading: str = "AUTO"
    "AUTO (smooth by angle), SMOOTH, FLAT, or NORMALS (the backend's custom normals when it sent them)."
    with_material: bool = False
    "Make a material with the mesh's normal texture (needs UVs: relief meshes have them)."
    with_color: bool = True
    "In that material, take the image as the base colour (when the backend sent it)."
    collection: str = "Hi3DGen"
    view_camera: bool = True
    "From a plain image, with a result camera: make a camera for the estimated view (``<object> view``)."


def resolve_python(preference: str, environ: dict[str, str] | None = None) -> str:
    """The backend interpreter: $HI3DGEN_PYTHON if set, else the preference ('' if neither)."""
    env = os.environ if environ is None else environ
    return (env.get(ENV_PYTHON) or preference or "").strip()


def parse_prefix(text: str) -> tuple[tuple[str, ...], str]:
    """The remote-command preference ('ssh gpu-box') as an argv prefix, and a problem sentence ('' if none)."""
    try:
        return (tuple(shlex.split(text)) if text.strip() else ()), ""
    except ValueError as exc:  # an unbalanced quote or a trailing backslash
        return (), (f"The Remote Command preference cannot be read ({exc}): check its quotes and "
                    "backslashes in Preferences > Add-ons > Hi3DGen.")


def prefix_is_shell(prefix: tuple[str, ...], mode: str = "AUTO") -> bool:
    """Whether ``prefix`` hands its arguments to a shell that parses them (see ``PREFIX_MODES``).

    AUTO: yes when any word of the prefix is ssh or autossh (so ``timeout 60 ssh box`` and ``env ssh box``
    count), or wsl without ``-e``/``--exec``; a wrapper script of your own needs SHELL set explicitly.
    """
    if mode != "AUTO" or not prefix:
        return mode == "SHELL" and bool(prefix)
    for n, word in enumerate(prefix):
        name = word.replace("\\", "/").rsplit("/", 1)[-1].lower().removesuffix(".exe")  # Windows paths too
        if name in REMOTE_SHELL_PROGRAMS:
            return True
        if name == "wsl" and not {"-e", "--exec"} & set(prefix[n + 1:]):
            return True
    return False


def config_problem(config: BackendConfig) -> str:
    """A sentence telling the user what is wrong with the backend settings, or '' if they look usable."""
    if config.prefix_problem:
        return config.prefix_problem
    if config.prefix and not config.argv and "=" in config.python:
        return (f"Backend Python '{config.python}' contains '=': with a Remote Command it is started "
                "through env, which would take it for a variable. Use a path without '='.")
    return python_problem(config.python, config.prefix)


def python_problem(python: str, prefix: tuple[str, ...] = ()) -> str:
    """A sentence telling the user what is wrong with the interpreter setting, or '' if it looks usable."""
    if not python:
        return ("No backend Python is set. Press Install Backend (Preferences > Add-ons > Hi3DGen), or set "
                f"Backend Python there, or the {ENV_PYTHON} environment variable.")
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


def declared_params(engine: dict[str, Any] | None, values: dict[str, Any]) -> dict[str, Any]:
    """The values whose names the engine declares (none when its description is unknown), converted."""
    return engine_params(engine, values) if engine is not None else {}


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
