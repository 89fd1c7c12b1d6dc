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


def test_synthesis_never_imports_blender_or_pickle():
    for path in (REPO / "synthesis").rglob("*.py"):
        assert not _imports(path) & {"bpy", "bmesh", "mathutils", "blender_addon", "pickle"}, path
        assert "allow_pickle=True" not in path.read_text(encoding="utf-8"), path


def test_importing_synthesis_does_nothing(tmp_path):
    code = ("import os, sys; before = set(os.listdir('.')); "
            "import synthesis.cli, synthesis.pipeline, synthesis.reader; "
            "assert set(os.listdir('.')) == before; "
            "assert 'torch' not in sys.modules and 'bpy' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
