"""A whole-frame mask never passes silently in Blender: through the installed extension, the real backend and
the relief engine, the scripting API warns (``GenerationWarning``), the object carries ``hi3dgen_mask``, the
panel's result line says where the mask came from and shows the warning, and the operator reports it."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from tests.blender.blender_session import bpy, clear_scene
from tests.blender.test_extension import (  # noqa: F401 - module fixtures, one installed extension here
    BACKEND_PYTHON,
    built_zip,
    draw_panel,
    ext,
    picture,
)

pytestmark = pytest.mark.skipif(not BACKEND_PYTHON.exists(), reason="backend venv (.venv) not installed")


@pytest.fixture(scope="module")
def slab(ext, tmp_path_factory) -> Path:  # noqa: F811
    """An RGBA picture opaque except a thin transparent strip at the top: its alpha makes 97 % the object."""
    rgba = np.zeros((96, 96, 4), np.uint8)
    rgba[..., :3] = (180, 90, 40)
    rgba[..., 3] = 255
    rgba[:3, :, 3] = 0
    path = tmp_path_factory.mktemp("slab") / "slab.png"
    path.write_bytes(ext.sources.encode_png(rgba))
    return path


def test_api_warns_about_a_whole_frame_mask_and_tags_the_object(ext, slab):  # noqa: F811
    clear_scene()
    with pytest.warns(ext.api.GenerationWarning, match="whole frame") as caught:
        obj = ext.api.generate(str(slab), engine="relief", resolution=24)
    assert "Check the image's alpha channel" in str(caught[0].message)
    report = obj["hi3dgen_mask"].to_dict()
    assert report["source"] == "alpha" and report["coverage"] > 0.9 and "whole frame" in report["warning"]
    assert "mask: alpha, 97% of the image" in ext.generation.last_result()
    assert "whole frame" in ext.generation.last_warning()


def test_a_good_mask_gives_no_warning_and_still_says_where_it_came_from(ext, picture):  # noqa: F811
    clear_scene()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ext.api.GenerationWarning)
        obj = ext.api.generate(str(picture), engine="relief", resolution=24)
    report = obj["hi3dgen_mask"].to_dict()
    assert report["source"] == "alpha" and 0.3 < report["coverage"] < 0.7 and report["warning"] == ""
    assert ext.generation.last_warning() == "" and "mask: alpha" in ext.generation.last_result()


def test_the_operator_reports_the_warning_and_the_panel_shows_it(ext, slab):  # noqa: F811
    clear_scene()
    result = bpy.ops.hi3dgen.generate(image_path=str(slab), engine="relief", params_json='{"resolution": 24}')
    assert result == {"FINISHED"}  # made, and a warning (not an error, which would raise here)
    reports: list[tuple[set[str], str]] = []

    class Recorder:  # what the operator's report() receives
        def report(self, kind: set[str], text: str) -> None:
            reports.append((kind, text))

    ext.operators._report_result(Recorder())
    assert reports[0][0] == {"INFO"} and "mask: alpha, 97%" in reports[0][1]
    assert reports[1][0] == {"WARNING"} and "whole frame" in reports[1][1]
    lines = _panel_lines(ext)
    assert any(text.startswith("Warning: The image's alpha mask covers") for text, _ in lines)
    assert any("mask: alpha" in text and icon == "ERROR" for text, icon in lines)


def _panel_lines(ext) -> list[tuple[str, str]]:  # noqa: ANN001, F811
    """The labels (text, icon) the main panel draws now, through the recording stand-in layout."""
    log = draw_panel(ext.ui.HI3DGEN_PT_main, bpy.context)
    return [(kw.get("text", ""), kw.get("icon", "NONE")) for name, _, kw in log if name == "label"]
