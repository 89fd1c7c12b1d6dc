"""The import walls around synthesis/: it may use backend, but backend and the add-on never import it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_backend_and_the_addon_never_import_synthesis():
    for folder in ("backend", "blender_addon"):
        for path in (REPO / folder).rglob("*.py"):
            assert "synthesis" not in _imports(path), path


def test_synthesis_never_imports_blender_or_pickle_outside_its_blender_folder():
    blender_side = REPO / "synthesis" / "blender"
    for path in (REPO / "synthesis").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "pickle" not in _imports(path) and "allow_pickle=True" not in text, path
        assert "blender_addon" not in _imports(path), path
        if blender_side not in path.parents:
            assert not _imports(path) & {"bpy", "bmesh", "mathutils"}, path
            assert "synthesis.blender" not in text.replace('"-m", "synthesis.blender', ""), path  # only as a subprocess


def test_importing_synthesis_does_nothing(tmp_path):
    code = ("import os, sys; before = set(os.listdir('.')); "
            "import synthesis.cli, synthesis.pipeline, synthesis.reader; "
            "assert set(os.listdir('.')) == before; "
            "assert 'torch' not in sys.modules and 'bpy' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
