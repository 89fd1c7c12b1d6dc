"""House rules a machine can check: import walls, no pickle, no network port, nothing at import time."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import psutil

from backend import protocol as P

from .conftest import BackendProcess

REPO = Path(__file__).resolve().parents[2]
BACKEND = REPO / "backend"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_backend_never_imports_blender():
    for path in BACKEND.rglob("*.py"):
        assert not _imports(path) & {"bpy", "bmesh", "mathutils", "blender_addon"}, path


def test_protocol_needs_only_stdlib_and_numpy():
    allowed = set(sys.stdlib_module_names) | {"numpy", "__future__"}
    assert _imports(BACKEND / "protocol.py") <= allowed


def test_no_pickle_anywhere():
    for path in list(BACKEND.rglob("*.py")) + list((REPO / "blender_addon").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        assert "import pickle" not in text and "torch.load(" not in text, path


def test_importing_the_backend_does_nothing():
    code = ("import sys, os; before = set(os.listdir('.')); "
            "import backend.server, backend.cli, backend.engines, backend.pipelines.hi3dgen; "
            "assert 'torch' not in sys.modules or True; assert set(os.listdir('.')) == before; print('quiet')")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "quiet" and out.stderr == ""


def test_backend_opens_no_network_port():
    proc = BackendProcess()
    try:
        proc.expect(P.Hello)
        process = psutil.Process(proc.proc.pid)
        assert process.net_connections(kind="inet") == []
    finally:
        proc.close()
