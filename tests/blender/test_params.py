"""Engine parameters from the operator and the panel, in real Blender through the installed extension.

``params_json`` that is not a JSON object, or holds NaN or infinities, and panel fields set to NaN from
Python (a FloatProperty keeps NaN: min/max do not clamp it) are refused with a clear message before the
backend is asked; values of the wrong type reach the real backend and come back as ``bad_input``. The
operator ends CANCELLED, the scene is unchanged, and the next generation works.
"""

from __future__ import annotations

import math

import pytest

from tests.blender.blender_session import backend_children, bpy
from tests.blender.test_extension import (  # noqa: F401 - module fixtures, one installed extension here
    BACKEND_PYTHON,
    built_zip,
    ext,
    picture,
)
from tests.blender.test_faults import FAST, generate_fails, scene_state, user_scene, verdicts  # noqa: F401

pytestmark = pytest.mark.skipif(not BACKEND_PYTHON.exists(), reason="backend venv (.venv) not installed")

LOCAL = [  # refused by the add-on itself, no backend needed
    ("[1]", "not a list"), ("7", "not a number"), ("null", "not null"), ('"x"', "not a string"),
    ("NaN", "NaN"), ('{"depth": NaN}', "NaN"), ('{"depth": -Infinity}', "Infinity"),
    ('{"depth": 1e400}', "'depth' is inf"), ("{bad", "not valid JSON"),
]
REMOTE = [  # sent, refused by the real backend
    ('{"resolution": 3.5}', "resolution"), ('{"normals": ["auto"]}', "normals"), ('{"depth": "0.5"}', "depth"),
    ('{"resolution": true}', "resolution"), ('{"ss_steps": 5}', "Unknown parameter"),
]


def _refused(ext, picture, verdicts, params_json: str, words: str) -> str:  # noqa: F811
    before = user_scene()
    text = generate_fails(picture, verdicts, params_json=params_json)
    failure = ext.generation.last_error()
    assert failure.code == "bad_input" and words in text, text
    assert "Traceback" not in text and len(text) < 400
    assert scene_state() == before
    return text


@pytest.mark.parametrize(("params_json", "words"), LOCAL, ids=[c[0] for c in LOCAL])
def test_params_json_that_is_no_object_of_numbers_is_refused(ext, picture, verdicts, params_json, words):  # noqa: F811
    ext.generation.stop_backend()
    _refused(ext, picture, verdicts, params_json, words)
    assert backend_children() == [], "refused before any backend started"


@pytest.mark.parametrize(("params_json", "words"), REMOTE, ids=[c[0] for c in REMOTE])
def test_wrong_value_types_come_back_as_bad_input(ext, picture, verdicts, params_json, words):  # noqa: F811
    text = _refused(ext, picture, verdicts, params_json, words)
    hint = ext.generation.last_error().hint
    assert hint and hint in text, "the backend's hint says what to use"


def test_a_nan_panel_field_is_refused_and_the_next_run_works(ext, picture, verdicts):  # noqa: F811
    props = bpy.context.window_manager.hi3dgen
    props.engine, props.resolution = "relief", 32
    props.depth = float("nan")
    assert math.isnan(props.depth), "Blender keeps NaN in a FloatProperty"
    try:
        _refused(ext, picture, verdicts, "", "'depth'")
    finally:
        props.depth = 0.5
    before = scene_state()
    assert bpy.ops.hi3dgen.generate(image_path=str(picture), params_json=FAST) == {"FINISHED"}
    assert len(scene_state()["objects"]) == len(before["objects"]) + 1
