"""Named speed/quality presets of the hi3dgen engine: official, standard, draft.

A preset names values for the parameters in ``GOVERNED`` (steps, guidance, sampler, quantisation of the two
flows). The rule: a governed parameter the request sends explicitly wins; one it leaves out takes the
preset's value; without a ``preset`` (or with ``official``) the parameters' own defaults apply, which are the
official app's, so ``official`` is exactly the path without presets (same sampler, steps, guidance, dtype).
Everything a preset does not govern (seed, extraction, cleanup, align, refine, texture) is untouched.

Deviations are measured on trained tiny flows (``bench/bench_preset_quality.py``: the structure stage;
``bench/bench_preset_latent_quality.py``: the latent stage), wall times on real-size random weights
(``bench/bench_presets.py --full``).

Costs are model forwards of the two flows (``forwards``); ``bench/bench_presets.py`` turns them into wall
time on a CPU and measures each preset's deviation from official.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GOVERNED = ("ss_steps", "ss_guidance", "ss_rescale_t", "slat_steps", "slat_guidance", "sampler", "quantize",
            "normal_resolution")
"The parameters a preset sets (when the request does not)."
DEFAULT_PRESET = "official"


@dataclass(frozen=True)
class Preset:
    name: str
    summary: str
    "What it changes and what it costs, one sentence (the panel's tooltip, ``info``)."
    values: dict[str, Any]
    "A value for every name in ``GOVERNED``."

    def forwards(self, cfg_interval: tuple[float, float] = (0.5, 1.0), rescale_t: float = 3.0) -> tuple[int, int]:
        """(structure, latent) flow forwards this preset costs (the release's interval and ``rescale_t``, the
        structure stage's own ``ss_rescale_t`` where the preset sets one)."""
        from .sampling import SamplerParams
        from .sampling_heun import sampler_forward_passes

        v = self.values
        ss = SamplerParams(v["ss_steps"], v["ss_guidance"], cfg_interval, v["ss_rescale_t"] or rescale_t)
        slat = SamplerParams(v["slat_steps"], v["slat_guidance"], cfg_interval, rescale_t)
        return sampler_forward_passes(v["sampler"], ss), sampler_forward_passes(v["sampler"], slat)


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("official",
           "The official app's path: structure 50 Euler steps, latent 6, guidance 3, float32 (88 + 11 flow forwards; "
           "60 minutes measured from a photo on a 2-core AVX2 CPU, minutes on a GPU).",
           {"ss_steps": 50, "ss_guidance": 3.0, "ss_rescale_t": 0.0, "slat_steps": 6, "slat_guidance": 3.0,
            "sampler": "euler", "quantize": "none", "normal_resolution": 768}),
    Preset("standard",
           "Euler sampler, structure 10 steps, latent 6 (official's), guidance 3, int8 Linear layers on a CPU (18 + "
           "11 forwards; 18 minutes measured from a photo on a 2-core AVX2 CPU; on trained test flows its structure "
           "is close to official's: occupancy IoU 0.92 to 0.95).",
           {"ss_steps": 10, "ss_guidance": 3.0, "ss_rescale_t": 0.0, "slat_steps": 6, "slat_guidance": 3.0,
            "sampler": "euler", "quantize": "int8_on_cpu", "normal_resolution": 768}),
    Preset("draft",
           "Euler sampler, structure 3 evenly spaced steps (guidance 3), latent 2 steps at guidance 1, int8 Linear "
           "layers on a CPU, NiRNE at 512 px (5 + 4 forwards; 8 minutes measured from a photo on a 2-core AVX2 CPU; "
           "on trained test flows its structure stays close to official's, occupancy IoU 0.89 to 0.91, and its "
           "surface scores near official's).",
           {"ss_steps": 3, "ss_guidance": 3.0, "ss_rescale_t": 1.0, "slat_steps": 2, "slat_guidance": 1.0,
            "sampler": "euler", "quantize": "int8_on_cpu", "normal_resolution": 512}),
)}
PRESET_NAMES = tuple(PRESETS)


def expand_preset(raw: dict[str, Any], preset: str) -> dict[str, Any]:
    """``raw`` request parameters with the preset's value for every governed name ``raw`` leaves out.

    ``preset`` is already validated (one of ``PRESET_NAMES``). The official preset adds nothing: the
    parameters' defaults are its values.
    """
    if preset == DEFAULT_PRESET:
        return dict(raw)
    return {**PRESETS[preset].values, **raw}


def preset_summary() -> str:
    """One line per preset for the parameter's description."""
    return " ".join(f"{p.name}: {p.summary}" for p in PRESETS.values())
