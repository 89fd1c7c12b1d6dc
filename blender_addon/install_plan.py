"""What Install Backend will do, decided before anything runs (no bpy): the machine, the torch build that
fits it, the package source, and the commands, one step each.

The environment is made by a Python that can make one: Blender's own interpreter (``sys.executable``) by
default. It always exists, ships ``venv`` and ``ensurepip``, and is the Python version the pinned wheels
are chosen for (3.11 in Blender 4.2-5.0); $HI3DGEN_BASE_PYTHON names another one (a system Python 3.10+)
for Blender builds whose Python lacks ``ensurepip``. Blender's own site-packages are never touched.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field

TORCH_VERSION = "2.13.0"
"The torch release the backend is tested with (the Makefile's TORCH too)."
TORCH_INDEX = "https://download.pytorch.org/whl/"
"The PyTorch project's own index: one sub-index per build (cpu, cu126, ...)."
ENV_WHEELS = "HI3DGEN_WHEELS"
"Environment variable: a folder of wheels to install from, offline (overrides the preference)."
ENV_INDEX_URL = "HI3DGEN_INDEX_URL"
"Environment variable: a private package index (PEP 503 'simple' URL) to install from."
ENV_PIP_ARGS = "HI3DGEN_PIP_ARGS"
"Environment variable: more pip options for every pip step, e.g. '--proxy http://proxy:3128 --cert ca.pem'."
ENV_BASE_PYTHON = "HI3DGEN_BASE_PYTHON"
"Environment variable: the Python that creates the environment (default: Blender's own)."
ENV_FOLDER = "backend-env"
"The environment's folder name inside the extension's user folder."
PARTIAL_SUFFIX = ".partial"
"An environment being made lives under this name until it is complete, then it is renamed."
PINS_NAME = "backend-pins.txt"
MARKER = "hi3dgen-env.json"
"File inside a finished environment: the add-on version and pins hash it was made for."

CUDA_VARIANTS: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...] = (
    # (wheel variant, lowest Linux driver, lowest Windows driver): the drivers the CUDA toolkit release
    # notes name for each release (no minor-version compatibility is counted on)
    ("cu118", (520, 61, 5), (520, 6)),
    ("cu121", (530, 30, 2), (531, 14)),
    ("cu124", (550, 54, 14), (551, 61)),
    ("cu126", (560, 28, 3), (560, 76)),
    ("cu128", (570, 26), (570, 65)),
    ("cu130", (580, 65, 6), (580, 88)),
)
PUBLISHED_CUDA = ("cu126", "cu128", "cu130")
"""The CUDA builds published for TORCH_VERSION (each torch release publishes three or so; the Torch Build
preference can name any variant above when this list is out of date)."""
TORCH_CHOICES = ("auto", "cpu", "default", *(v for v, _, _ in CUDA_VARIANTS))
"""Torch Build preference: auto (from the machine), cpu, default (the package index's own torch: CUDA on
Linux x86_64, CPU on Windows, Metal on Apple silicon), or one CUDA variant."""


class PlanProblem(Exception):
    """Install Backend cannot start: ``message`` says why, ``hint`` what to do."""

    def __init__(self, code: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.code, self.message, self.hint = code, message, hint


@dataclass(frozen=True)
class Machine:
    """The facts the torch build is chosen from."""

    system: str
    "platform.system(): Linux, Windows, Darwin."
    arch: str
    "platform.machine(), lower case: x86_64, amd64, arm64, aarch64."
    python: tuple[int, int] = (3, 11)
    "The version of the Python that makes the environment."
    driver: tuple[int, ...] | None = None
    "NVIDIA driver version from nvidia-smi, None without one."
    compute_cap: tuple[int, int] | None = None
    "The first GPU's compute capability, when nvidia-smi reports it."
    bits: int = 64


@dataclass(frozen=True)
class TorchChoice:
    variant: str
    "cpu, default or a CUDA variant (cu126, ...)."
    reason: str
    "One sentence for the panel and the log."


@dataclass(frozen=True)
class InstallSettings:
    """What the preferences and the environment say, gathered by the operator."""

    user_dir: str
    "The extension's user folder (the environment goes into ENV_FOLDER inside it)."
    pins_path: str
    addon_version: str
    base_python: str = ""
    "'' for Blender's own (sys.executable), unless $HI3DGEN_BASE_PYTHON names one."
    torch_build: str = "auto"
    wheel_dir: str = ""
    index_url: str = ""
    online: bool = False
    "bpy.app.online_access: needed for every source but a wheel folder."
    backend_root: str = ""
    "The folder holding the bundled ``backend`` package (the last step imports it)."


@dataclass(frozen=True)
class Step:
    name: str
    "venv, pip, torch, requirements, verify: the stage shown in the panel."
    label: str
    argv: tuple[str, ...]
    weight: float
    "Share of the whole install's time (for one progress bar)."
    pip: bool = False
    "True when pip runs it (its output is parsed for progress and errors)."


@dataclass(frozen=True)
class InstallPlan:
    env_dir: str
    partial_dir: str
    steps: tuple[Step, ...]
    env: dict[str, str] = field(repr=False)
    "The environment of every step's process."
    torch: TorchChoice
    source: str
    "wheels, index or default: where packages come from (the error messages depend on it)."
    source_text: str
    marker: dict[str, str]
    base_python: str


# ---------------------------------------------------------------------------------------------- machine


def parse_version(text: str) -> tuple[int, ...] | None:
    """'560.35.03' -> (560, 35, 3); None when ``text`` holds no dotted number."""
    match = re.search(r"\d+(?:\.\d+)+|\d+", text)
    return tuple(int(p) for p in match.group(0).split(".")) if match else None


def parse_nvidia_smi(text: str) -> tuple[tuple[int, ...] | None, tuple[int, int] | None]:
    """(driver version, compute capability) from ``nvidia-smi --query-gpu=driver_version,compute_cap
    --format=csv,noheader`` lines ('560.35.03, 8.6') or from plain nvidia-smi's banner
    ('Driver Version: 535.104.05   CUDA Version: 12.2'); (None, None) when neither is found."""
    banner = re.search(r"Driver Version:\s*([\d.]+)", text)
    if banner:
        return parse_version(banner.group(1)), None
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        driver = parse_version(parts[0]) if re.fullmatch(r"\d+(\.\d+)+", parts[0]) else None
        if driver is None:
            continue
        cap = None
        if len(parts) > 1 and re.fullmatch(r"\d+\.\d+", parts[1]):
            major, minor = parts[1].split(".")
            cap = (int(major), int(minor))
        return driver, cap
    return None, None


def query_nvidia(timeout: float = 10.0) -> str:
    """nvidia-smi's answer ('' without an NVIDIA driver). The compute capability field is newer than some
    drivers: those refuse the query, and the driver version alone is asked then."""
    for fields in ("driver_version,compute_cap", "driver_version"):
        try:
            out = subprocess.run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.SubprocessError):
            return ""
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout
    return ""


def this_machine(python: tuple[int, int] | None = None, nvidia_text: str | None = None) -> Machine:
    """The machine Blender runs on (nvidia-smi is asked unless ``nvidia_text`` is given)."""
    driver, cap = parse_nvidia_smi(query_nvidia() if nvidia_text is None else nvidia_text)
    return Machine(system=platform.system(), arch=platform.machine().lower(),
                   python=python or (sys.version_info[0], sys.version_info[1]), driver=driver, compute_cap=cap,
                   bits=64 if sys.maxsize > 2**32 else 32)


def platform_problem(machine: Machine) -> str:
    """Why torch has no build for this machine ('' when it has one)."""
    if machine.bits != 64:
        return "This is a 32-bit Python; torch is published for 64-bit systems only."
    if machine.system == "Darwin" and machine.arch in ("x86_64", "amd64"):
        return "torch no longer publishes builds for Intel Macs (only Apple silicon)."
    if machine.system not in ("Linux", "Windows", "Darwin"):
        return f"torch publishes no build for {machine.system}."
    if machine.python < (3, 10) or machine.python > (3, 14):
        return f"torch {TORCH_VERSION} has no build for Python {machine.python[0]}.{machine.python[1]}."
    return ""


def choose_torch(machine: Machine, override: str = "auto") -> TorchChoice:
    """The torch build for ``machine``: CUDA when an NVIDIA driver is there (the newest published variant
    the driver runs and the GPU is built for), the index's default on macOS, CPU otherwise."""
    if override != "auto":
        if override not in TORCH_CHOICES:
            raise PlanProblem("bad_setting", f"Unknown torch build '{override}'.",
                              f"Choose one of {', '.join(TORCH_CHOICES)} in the Torch Build preference.")
        return TorchChoice(override, f"{override}, as set in the Torch Build preference")
    if machine.system == "Darwin":
        return TorchChoice("default", "the standard build (Metal on Apple silicon)")
    if machine.driver is None:
        return TorchChoice("cpu", "the CPU build: no NVIDIA driver found (nvidia-smi)")
    driver = ".".join(map(str, machine.driver))
    fitting = [v for v in _cuda_candidates(machine.compute_cap) if machine.driver >= _min_driver(v, machine)]
    if not fitting:
        return TorchChoice("cpu", f"the CPU build: NVIDIA driver {driver} is older than the oldest CUDA "
                                  f"build of torch {TORCH_VERSION} needs (update the driver to use the GPU)")
    return TorchChoice(fitting[-1], f"{fitting[-1]}: the newest CUDA build NVIDIA driver {driver} runs")


def _cuda_candidates(cap: tuple[int, int] | None) -> list[str]:
    """Published variants, oldest first, that carry kernels for a GPU of compute capability ``cap``:
    CUDA 12.8+ builds dropped GPUs older than Turing (7.5); Blackwell (10.0+) needs 12.8+."""
    variants = [v for v, _, _ in CUDA_VARIANTS if v in PUBLISHED_CUDA]
    if cap is not None and cap < (7, 5):
        variants = [v for v in variants if v < "cu128"]
    if cap is not None and cap >= (10, 0):
        variants = [v for v in variants if v >= "cu128"]
    return variants


def _min_driver(variant: str, machine: Machine) -> tuple[int, ...]:
    _, linux, windows = next(row for row in CUDA_VARIANTS if row[0] == variant)
    return windows if machine.system == "Windows" else linux


# ---------------------------------------------------------------------------------------------- plan


def env_python(env_dir: str, system: str | None = None) -> str:
    """The interpreter inside a virtual environment."""
    if (system or platform.system()) == "Windows":
        return os.path.join(env_dir, "Scripts", "python.exe")
    return os.path.join(env_dir, "bin", "python")


def pins_hash(pins_text: str) -> str:
    """sha256 of the pinned lines (comments and blanks dropped) and the torch version."""
    lines = [line.split("#", 1)[0].strip() for line in pins_text.splitlines()]
    body = "\n".join(sorted(line for line in lines if line)) + f"\ntorch=={TORCH_VERSION}\n"
    return hashlib.sha256(body.encode()).hexdigest()


def pinned(pins_text: str, name: str) -> str:
    """The exact pin of ``name`` in the pins ('' when it has none)."""
    for line in pins_text.splitlines():
        spec = line.split("#", 1)[0].strip()
        if spec.lower().startswith(name.lower() + "=="):
            return spec
    return ""


def resolve_source(settings: InstallSettings, environ: dict[str, str]) -> tuple[str, str]:
    """(kind, location): the environment variables win over the preferences, a wheel folder over an index."""
    wheels = (environ.get(ENV_WHEELS) or settings.wheel_dir).strip()
    if wheels:
        return "wheels", wheels
    index = (environ.get(ENV_INDEX_URL) or settings.index_url).strip()
    if index:
        return "index", index
    return "default", ""


def source_args(kind: str, location: str) -> list[str]:
    if kind == "wheels":
        return ["--no-index", "--find-links", location]
    if kind == "index":
        host = re.match(r"(?i)^http://([^/:@]+@)?([^/:]+)", location)
        # pip ignores a plain-http index unless trusted: one the studio set up explicitly is
        return ["--index-url", location, *(("--trusted-host", host.group(2)) if host else ())]
    return []


def torch_source_args(kind: str, location: str, torch: TorchChoice) -> list[str]:
    """Where torch comes from: the chosen source, or with the default one the PyTorch index of the build
    (the 'default' build comes from the ordinary index)."""
    if kind != "default" or torch.variant == "default":
        return source_args(kind, location)
    return ["--index-url", TORCH_INDEX + torch.variant]


def step_env(kind: str, environ: dict[str, str]) -> dict[str, str]:
    """The environment of the install's processes: none of Blender's Python settings; with a source of
    the user's choosing, none of pip's configured indexes either, so it is the only source used."""
    env = {k: v for k, v in environ.items() if k not in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP")}
    env.update(PYTHONUNBUFFERED="1", PYTHONNOUSERSITE="1", PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    if kind != "default":
        for key in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX", "PIP_CONSTRAINT",
                    "PIP_REQUIREMENT"):
            env.pop(key, None)
        env["PIP_CONFIG_FILE"] = os.devnull  # pip reads no configuration file then
    return env


def plan_install(settings: InstallSettings, machine: Machine, environ: dict[str, str] | None = None
                 ) -> InstallPlan:
    """The whole install as steps, or ``PlanProblem`` saying why it cannot start."""
    environ = dict(os.environ if environ is None else environ)
    problem = platform_problem(machine)
    if problem:
        raise PlanProblem("unsupported_platform", problem,
                          "Run the backend on a supported machine through the Remote Command preference, "
                          "or install it by hand and set Backend Python.")
    kind, location = resolve_source(settings, environ)
    _check_source(kind, location, settings.online)
    pins_text = _read_pins(settings.pins_path)
    torch = choose_torch(machine, settings.torch_build)
    env_dir = os.path.join(settings.user_dir, ENV_FOLDER)
    partial = env_dir + PARTIAL_SUFFIX
    base = settings.base_python or environ.get(ENV_BASE_PYTHON, "") or sys.executable
    python = env_python(partial, machine.system)
    steps = _steps(base, partial, python, kind, location, torch, settings, pins_text, _pip_args(environ))
    marker = {"addon_version": settings.addon_version, "pins_sha256": pins_hash(pins_text),
              "torch": f"{TORCH_VERSION} ({torch.variant})", "source": kind, "base_python": base}
    return InstallPlan(env_dir=env_dir, partial_dir=partial, steps=steps, env=step_env(kind, environ),
                       torch=torch, source=kind, source_text=location or "the default package index",
                       marker=marker, base_python=base)


def _steps(base: str, partial: str, python: str, kind: str, location: str, torch: TorchChoice,
           settings: InstallSettings, pins_text: str, extra: tuple[str, ...]) -> tuple[Step, ...]:
    pip = (python, "-m", "pip", "install", "--no-input", "--disable-pip-version-check", "--retries", "2", *extra)
    steps = [Step("venv", "Creating the environment", (base, "-m", "venv", partial), 0.05)]
    pip_pin = pinned(pins_text, "pip")
    if pip_pin:  # the bundled pip may predate --progress-bar raw: it is updated first, with no progress bar
        steps.append(Step("pip", "Updating pip", (*pip, "--progress-bar", "off", pip_pin,
                                                  *source_args(kind, location)), 0.05, pip=True))
    raw = ("--progress-bar", "raw") if pip_pin else ()
    steps.append(Step("torch", f"Installing torch {TORCH_VERSION} ({torch.variant})",
                      (*pip, *raw, f"torch=={TORCH_VERSION}", *torch_source_args(kind, location, torch)), 0.55,
                      pip=True))
    steps.append(Step("requirements", "Installing the backend's packages",
                      (*pip, *raw, "-r", settings.pins_path, *source_args(kind, location)), 0.3, pip=True))
    check = "import torch, numpy, scipy, PIL, safetensors; import backend.protocol; print(torch.__version__)"
    if settings.backend_root:
        check = f"import sys; sys.path.insert(0, {settings.backend_root!r}); " + check
    steps.append(Step("verify", "Checking the environment", (python, "-c", check), 0.05))
    return tuple(steps)


def _pip_args(environ: dict[str, str]) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(environ.get(ENV_PIP_ARGS, "")))
    except ValueError as exc:
        raise PlanProblem("bad_setting", f"{ENV_PIP_ARGS} cannot be read ({exc}).",
                          "Check its quotes.") from None


def _check_source(kind: str, location: str, online: bool) -> None:
    if kind == "wheels":
        if not os.path.isdir(location):
            raise PlanProblem("bad_source", f"The wheel folder '{location}' does not exist.",
                              f"Set Wheel Folder (or {ENV_WHEELS}) to a folder of .whl files.")
        return
    if kind == "index" and not re.match(r"(?i)^(https?|file)://", location):
        raise PlanProblem("bad_source", f"The package index '{location}' is not an http(s):// or file:// URL.",
                          "Set Package Index to the index's 'simple' URL, e.g. https://pypi.studio.lan/simple.")
    if not online:
        raise PlanProblem("offline", "Blender's online access is off, and installing needs the network.",
                          "Allow it in Preferences > System > Network, or set a Wheel Folder (or "
                          f"{ENV_WHEELS}) for an offline install.")


def _read_pins(path: str) -> str:
    if not os.path.isfile(path):
        raise PlanProblem("no_pins", f"The pinned requirements '{path}' are missing from the add-on.",
                          "Reinstall the extension from its zip.")
    with open(path, encoding="utf-8") as f:
        return f.read()


def find_pins(addon_dir: str) -> str:
    """The pinned requirements: backend-pins.txt at the extension's root (zip), else the repository's
    requirements/backend-pins.txt beside the add-on folder."""
    for path in (os.path.join(addon_dir, PINS_NAME),
                 os.path.join(os.path.dirname(addon_dir), "requirements", PINS_NAME)):
        if os.path.isfile(path):
            return path
    return os.path.join(addon_dir, PINS_NAME)


def addon_version(addon_dir: str) -> str:
    """The extension's version from its blender_manifest.toml (the zip's root, or the repository's)."""
    for folder in (addon_dir, os.path.dirname(addon_dir)):
        path = os.path.join(folder, "blender_manifest.toml")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                match = re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.MULTILINE)
            if match:
                return match.group(1)
    return "unknown"
