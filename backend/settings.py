"""Backend-wide settings, built once at the entry point from command-line flags and the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class BackendSettings:
    """Where weights live, whether downloads are allowed, and the default device."""

    weights_dir: str | None = None
    "Folder holding one sub-folder per model (see backend/weights.py); None: env or Hugging Face cache."
    allow_download: bool = False
    "Whether the backend may download missing weights from the Hugging Face Hub."
    device: str = "auto"
    precision: str = "auto"
    fault: str = ""
    "Test-only fault injection spec (backend/faults.py)."
    test_engines: bool = False
    "Also offer the test-only engines (backend/engines/testing.py)."
    context: str = "serve"
    "Who reads the errors: 'serve' (the add-on, through the protocol) or 'cli' (a shell); picks the hints' words."

    @classmethod
    def from_env(cls, **overrides: object) -> "BackendSettings":
        """Defaults from the HI3DGEN_* environment variables (read here, never at import); then overrides."""
        env = os.environ
        base = cls(
            weights_dir=env.get("HI3DGEN_WEIGHTS") or None,
            allow_download=env.get("HI3DGEN_ALLOW_DOWNLOAD", "") in ("1", "true", "yes"),
            device=env.get("HI3DGEN_DEVICE", "auto"),
            fault=env.get("HI3DGEN_FAULT", ""),
            test_engines=env.get("HI3DGEN_TEST_ENGINES", "") == "1",
        )
        values = {k: v for k, v in overrides.items() if v is not None}
        return cls(**{**base.__dict__, **values})  # type: ignore[arg-type]
