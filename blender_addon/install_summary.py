"""What Install Backend tells the user before it starts (no bpy): where the environment goes, which Python
makes it and why, the torch build and why, the package source, the download and disk sizes, the licences;
and the free-disk check that refuses an install that cannot fit.

Sizes are estimates from the published wheels of the pinned releases (a CUDA build of torch brings NVIDIA's
libraries: about 3 GB to download, 6 GB unpacked); they are shown as "about" and only the disk check
depends on them, with a margin.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .install_plan import ENV_BASE_PYTHON, TORCH_VERSION, InstallPlan, PlanProblem

GB = 1_000_000_000
MB = 1_000_000
PACKAGES_DOWNLOAD = 400 * MB
"The pinned packages besides torch (numpy, scipy, diffusers, opencv, trimesh, ...): download size."
PACKAGES_DISK = 1_200 * MB
TORCH_SIZES: dict[str, tuple[int, int]] = {
    # variant kind -> (download, unpacked) bytes, rounded up from the wheels of TORCH_VERSION
    "cpu": (250 * MB, 1_000 * MB),
    "default-mac": (100 * MB, 500 * MB),
    "default": (3 * GB, 6 * GB),  # Linux' default torch is a CUDA build with NVIDIA's libraries
    "cuda": (3 * GB, 6 * GB),
}
DISK_MARGIN = 1 * GB
"Room kept beyond the estimate: pip's cache and temporary unpacking."
LICENCES = ("torch: BSD-3-Clause", "NVIDIA CUDA libraries (CUDA builds only): NVIDIA's software licence",
            "the other packages: BSD, MIT or Apache-2.0 (each named on its PyPI page)")


@dataclass(frozen=True)
class Sizes:
    download: int
    disk: int


def sizes(plan: InstallPlan, system: str | None = None) -> Sizes:
    """The install's estimated download and disk use (a wheel folder downloads nothing)."""
    variant = plan.torch.variant
    system = system or ("Darwin" if sys.platform == "darwin" else "other")
    kind = ("cuda" if variant.startswith("cu") else
            "default-mac" if variant == "default" and system == "Darwin" else variant)
    torch_download, torch_disk = TORCH_SIZES.get(kind, TORCH_SIZES["cuda"])
    download = 0 if plan.source == "wheels" else torch_download + PACKAGES_DOWNLOAD
    return Sizes(download, torch_disk + PACKAGES_DISK)


def base_python_reason(plan: InstallPlan, environ: dict[str, str] | None = None) -> str:
    """Which Python makes the environment, and why."""
    env = os.environ if environ is None else environ
    if env.get(ENV_BASE_PYTHON) and plan.base_python == env[ENV_BASE_PYTHON]:
        return f"{plan.base_python} (set by {ENV_BASE_PYTHON})"
    if plan.base_python == sys.executable:
        return (f"Blender's own Python ({plan.base_python}): it can make environments and is the version the "
                "pins are for; Blender's own packages are not touched")
    return plan.base_python


def summary_lines(plan: InstallPlan, free: int | None, system: str | None = None,
                  environ: dict[str, str] | None = None) -> list[str]:
    """The lines of the confirmation dialog."""
    size = sizes(plan, system)
    fetched = "nothing (all from the wheel folder)" if plan.source == "wheels" else f"about {_gb(size.download)}"
    room = f", {_gb(free)} free" if free is not None else ""
    return [f"Into: {plan.env_dir}",
            f"Made by: {base_python_reason(plan, environ)}",
            f"torch {TORCH_VERSION}: {plan.torch.reason}",
            f"From: {plan.source_text}",
            f"Download: {fetched}; on disk: about {_gb(size.disk)}{room}",
            "Licences:", *(f"    {licence}" for licence in LICENCES)]


def free_bytes(folder: str, disk_usage: Callable[[str], Any] | None = None) -> int | None:
    """Free bytes on the disk holding ``folder`` (or its nearest existing parent); None if unknown."""
    probe = os.path.abspath(folder)
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    try:
        return int((disk_usage or shutil.disk_usage)(probe).free)
    except OSError:
        return None


def check_disk(plan: InstallPlan, disk_usage: Callable[[str], Any] | None = None,
               system: str | None = None) -> None:
    """``PlanProblem('disk_full')`` when the disk holding the environment has too little room."""
    free = free_bytes(plan.env_dir, disk_usage)
    need = sizes(plan, system).disk + DISK_MARGIN
    if free is not None and free < need:
        raise PlanProblem("disk_full", f"Not enough free disk space for the backend: it needs about {_gb(need)}, "
                                       f"{_gb(free)} are free where it goes ({os.path.dirname(plan.env_dir)}).",
                          "Free some space on that disk (Blender's user folder), then press Install Backend "
                          "again.")


def _gb(n: int) -> str:
    return f"{n / GB:.1f} GB"
