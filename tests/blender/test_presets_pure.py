"""The panel's preset enum mirrors the backend's presets, and the rule for the step fields sent with one."""

from __future__ import annotations

from backend.presets import GOVERNED as BACKEND_GOVERNED
from backend.presets import PRESETS as BACKEND_PRESETS
from blender_addon.presets import GOVERNED, PRESETS, preset_params

DEFAULTS = {"ss_steps": 50, "ss_guidance": 3.0, "slat_steps": 6, "slat_guidance": 3.0}


def test_the_enum_mirrors_the_backend_presets():
    assert [name for name, _, _ in PRESETS] == list(BACKEND_PRESETS)
    for name, label, description in PRESETS:
        assert description == BACKEND_PRESETS[name].summary and label == name.capitalize()
    assert set(GOVERNED) <= set(BACKEND_GOVERNED)
    assert {k: BACKEND_PRESETS["official"].values[k] for k in GOVERNED} == DEFAULTS


def test_fields_left_at_their_defaults_follow_the_preset_and_changed_ones_override_it():
    panel = {"preset": "draft", **DEFAULTS, "ss_steps": 12, "extraction": "flexicubes"}
    assert preset_params(panel, DEFAULTS) == {"preset": "draft", "ss_steps": 12, "extraction": "flexicubes"}
    official = {**panel, "preset": "official"}
    assert preset_params(official, DEFAULTS) == official  # official sends every field, as before presets
    no_preset = {**DEFAULTS, "resolution": 256}
    assert preset_params(no_preset, DEFAULTS) == no_preset  # a panel of an older add-on state: unchanged
