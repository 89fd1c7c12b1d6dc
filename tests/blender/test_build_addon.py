"""build_addon.py validates with the interpreter it runs in when that one has bpy (this venv), before
looking for .venv-blender or asking for --blender-python."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def build_addon(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(REPO))
    import build_addon

    monkeypatch.setattr(build_addon, "REPO", tmp_path)  # a checkout without .venv-blender
    return build_addon


def test_the_running_interpreter_with_bpy_validates(build_addon):
    python, script = build_addon.find_validator(None)
    assert python == sys.executable and script.name == "blender_ext.py" and script.is_file()


def test_an_explicit_python_comes_first_and_a_missing_one_is_refused(build_addon, tmp_path):
    assert build_addon.validator_pythons("/some/python") == [Path("/some/python")]
    with pytest.raises(SystemExit, match="--blender-python"):
        build_addon.find_validator(str(tmp_path / "no-python"))
