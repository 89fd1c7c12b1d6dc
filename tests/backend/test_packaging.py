"""``pip install .`` works: the backend package and the ``hi3dgen-backend`` command, from pyproject.toml.

Installed with ``--no-deps --target`` into a temporary folder from a copy of the sources, so nothing is
installed into the test environment and no build files land in the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from backend import __version__

from .conftest import REPO


def test_pip_installs_the_backend_and_its_command(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO / "backend", src / "backend", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "requirements", src / "requirements")
    shutil.copy(REPO / "pyproject.toml", src)
    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                           "--no-index", "--quiet", "--target", str(target), str(src)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert (target / "backend" / "cli.py").is_file() and (target / "backend" / "engines" / "relief.py").is_file()
    assert (target / "bin" / "hi3dgen-backend").is_file()
    metadata = next(target.glob("hi3dgen_blender-*.dist-info")) / "METADATA"
    text = metadata.read_text()
    assert f"Version: {__version__}" in text and "Requires-Dist: numpy" in text and "torch" not in text
    env = {**os.environ, "PYTHONPATH": str(target)}
    run = subprocess.run([sys.executable, "-m", "backend", "--version"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and __version__ in run.stdout, run.stderr
    assert Path(run.stdout.split()[0]).name == "hi3dgen-backend"
