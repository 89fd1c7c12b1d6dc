"""The engines the backend offers, built explicitly from the server's settings."""

from __future__ import annotations

from ..settings import BackendSettings
from .base import Engine
from .hi3dgen import Hi3DGenEngine
from .relief import ReliefEngine


def make_engines(settings: BackendSettings) -> dict[str, Engine]:
    """Every engine by name, in the order the add-on lists them."""
    from ..nirne.matting import MattingProvider

    matting = MattingProvider(settings)  # one learned segmenter (if its weights are present) for both
    full = Hi3DGenEngine(settings, matting)
    engines: list[Engine] = [ReliefEngine(estimator=full.nirne_if_present, matting=matting), full]
    if settings.test_engines:
        from .testing import SlowEngine

        engines.append(SlowEngine())
    return {e.name: e for e in engines}
