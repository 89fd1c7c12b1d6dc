"""The hi3dgen presets as the panel offers them (no bpy), and which step settings the panel sends with one.

A mirror of ``backend/presets.py`` (names and summaries; a test keeps them equal). The rule, the backend's:
a governed setting the request sends wins over the preset, one it leaves out takes the preset's value. The
panel always has a value in every field, so it sends a governed field only when it differs from the field's
default (the official value): a field left at its default follows the preset, any other value overrides it.
With Official nothing is left out (its values are the defaults).
"""

from __future__ import annotations

from typing import Any

PRESETS = (
    ("official", "Official",
     "The official app's path: structure 50 Euler steps, latent 6, guidance 3, float32 (88 + 11 flow forwards; 60 "
     "minutes measured from a photo on a 2-core AVX2 CPU, minutes on a GPU)."),
    ("standard", "Standard",
     "Euler sampler, structure 10 steps, latent 6 (official's), guidance 3, int8 Linear layers on a CPU (18 + 11 "
     "forwards; 18 minutes measured from a photo on a 2-core AVX2 CPU; on trained test flows its structure is close "
     "to official's: occupancy IoU 0.92 to 0.95)."),
    ("draft", "Draft",
     "Euler sampler, structure 3 evenly spaced steps (guidance 3), latent 2 steps at guidance 1, int8 Linear layers "
     "on a CPU, NiRNE at 512 px (5 + 4 forwards; 8 minutes measured from a photo on a 2-core AVX2 CPU; on trained "
     "test flows its structure stays close to official's, occupancy IoU 0.89 to 0.91, and its surface scores near "
     "official's)."),
)
"(name, label, description) for the panel's enum; the descriptions are the backend's summaries."
GOVERNED = ("ss_steps", "ss_guidance", "slat_steps", "slat_guidance")
"""The panel's fields a preset sets (the backend's ss_rescale_t, sampler, quantize and normal_resolution are not
panel fields)."""


def preset_params(values: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """``values`` (the panel's parameters, ``preset`` among them) without the governed fields left at their
    ``defaults`` when a preset other than official is chosen."""
    if values.get("preset", "official") == "official":
        return dict(values)
    return {k: v for k, v in values.items() if not (k in GOVERNED and k in defaults and v == defaults[k])}
