"""Build the Blender extension zip from named paths only, then check it with Blender's own validator.

    .venv-blender/bin/python build_addon.py [--output dist] [--blender-python PY] [--no-validate]

The validator runs in --blender-python, else in the interpreter running this script when it has bpy,
else in the repository's .venv-blender.

Zip layout (the extension's root): blender_manifest.toml, the add-on's modules (blender_addon/*.py),
backend-pins.txt (the exact versions Install Backend installs) and the ``backend/`` package (its .py files)
as a sub-folder, so the add-on can import ``backend.protocol`` and start ``python -m backend serve`` with
the extension folder on PYTHONPATH. No caches, no tests.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent
MANIFEST = REPO / "blender_manifest.toml"
ADDON = REPO / "blender_addon"
BACKEND = REPO / "backend"
PINS = REPO / "requirements" / "backend-pins.txt"
VALIDATOR = Path("5.0", "scripts", "addons_core", "bl_pkg", "cli", "blender_ext.py")


def manifest_version() -> str:
    match = re.search(r'^version\s*=\s*"([^"]+)"', MANIFEST.read_text("utf-8"), re.MULTILINE)
    if match is None:
        raise SystemExit("blender_manifest.toml has no version")
    return match.group(1)


def backend_version() -> str:
    text = (BACKEND / "__init__.py").read_text("utf-8")
    match = re.search(r'^__version__\s*=\s*"([^"]+)"', text, re.MULTILINE)
    return match.group(1) if match else ""


def entries() -> list[tuple[Path, str]]:
    """(source file, name in the zip) for every file of the extension."""
    files = [(MANIFEST, "blender_manifest.toml")]
    files += [(p, p.name) for p in sorted(ADDON.glob("*.py"))]
    files.append((PINS, PINS.name))  # Install Backend's exact versions (blender_addon/install_plan.py)
    files += [(p, Path("backend", p.relative_to(BACKEND)).as_posix())
              for p in sorted(BACKEND.rglob("*.py")) if "__pycache__" not in p.parts]
    return files


def build(output: Path) -> Path:
    version = manifest_version()
    if version != backend_version():
        raise SystemExit(f"manifest version {version} != backend.__version__ {backend_version()}")
    output.mkdir(parents=True, exist_ok=True)
    target = output / f"hi3dgen-{version}.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for source, name in entries():
            zf.write(source, name)
    return target


def validator_pythons(blender_python: str | None) -> list[Path]:
    """Interpreters to ask for bpy, in order: --blender-python if given, else the one running this script,
    then the repository's .venv-blender."""
    if blender_python:
        return [Path(blender_python)]
    return [Path(sys.executable), REPO / ".venv-blender" / "bin" / "python"]


def find_validator(blender_python: str | None) -> tuple[str, Path]:
    """(python, blender_ext.py) from the first of ``validator_pythons`` that can import bpy."""
    for python in validator_pythons(blender_python):
        if not python.exists():
            continue
        out = subprocess.run([str(python), "-c", "import bpy, os; print(os.path.dirname(bpy.__file__))"],
                             capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
        if out.returncode == 0:
            # bpy.__file__ is <site>/bpy/5.0/scripts/modules/bpy/__init__.py; the wheel root is 4 levels up
            root = Path(out.stdout.strip().splitlines()[-1]).parents[3]
            script = root / VALIDATOR
            if script.exists():
                return str(python), script
    raise SystemExit("No Python with bpy found (neither this one nor .venv-blender): pass --blender-python PATH "
                     "(or use --no-validate).")


def validate(zip_path: Path, blender_python: str | None) -> None:
    python, script = find_validator(blender_python)
    result = subprocess.run([python, str(script), "validate", str(zip_path)], capture_output=True, text=True)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    if result.returncode != 0:
        raise SystemExit(f"validation failed ({result.returncode})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(REPO / "dist"), help="output folder (default: dist/)")
    parser.add_argument("--blender-python", default=None, help="a Python that can import bpy (validator)")
    parser.add_argument("--no-validate", action="store_true", help="skip Blender's extension validator")
    args = parser.parse_args(argv)
    target = build(Path(args.output))
    print(f"built {target} ({target.stat().st_size / 1024:.0f} KiB, {len(entries())} files)")
    if not args.no_validate:
        validate(target, args.blender_python)
    return 0


if __name__ == "__main__":
    sys.exit(main())
