"""Backend-wide settings, built once at the entry point from command-line flags and the environment."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class BackendSettings:
    """Where weights live, whether downloads are allowed, and the default device."""

    weights_dir: str | None = None
    "Folder holding one sub-folder per model (see backend/weights.py); None: env or Hugging Face cache."
    allow_download: bool = False
    "Whether the backend may download missing weights from the Hugging Face Hub."
    device: str = "auto"
    precision: str = "auto"
    memory: str = "offload"
    "Device memory (backend/memory.py): 'offload' (one stage's networks on the device at a time) or 'resident'."
    memory_budget_gb: float = 0.0
    "Device memory the hi3dgen engine may plan for, in GiB; 0: what the device reports free (backend/memory_plan.py)."
    fault: str = ""
    "Test-only fault injection spec (backend/faults.py)."
    test_engines: bool = False
    "Also offer the test-only engines (backend/engines/testing.py)."
    threads: int = 0
    "torch's CPU threads, set once at the entry point (0: torch's default, one per core); ``--threads``."
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
            threads=_threads(env.get("HI3DGEN_THREADS", "")),
            memory=env.get("HI3DGEN_MEMORY") or "offload",
            memory_budget_gb=env.get("HI3DGEN_MEMORY_BUDGET") or 0.0,  # type: ignore[arg-type]
        )
        values = {k: v for k, v in overrides.items() if v is not None}
        settings = cls(**{**base.__dict__, **values})  # type: ignore[arg-type]
        return settings.checked()

    def checked(self) -> "BackendSettings":
        """These settings with the memory values checked (a hinted ``BadInput`` names a wrong one)."""
        from .errors import BadInput
        from .memory import check_mode

        check_mode(self.memory)
        try:
            budget = float(self.memory_budget_gb)
        except (TypeError, ValueError):
            budget = math.nan
        if not (math.isfinite(budget) and 0.0 <= budget <= 1e6):
            raise BadInput(f"Memory budget {str(self.memory_budget_gb)[:40]!r} is not a number of GiB.",
                           hint="Give --memory-budget (or HI3DGEN_MEMORY_BUDGET) as GiB from 0 (the device's "
                                "free memory) to 1000000, e.g. 6.")
        return replace(self, memory_budget_gb=budget)


MAX_THREADS = 1024


def _threads(text: str) -> int:
    """``HI3DGEN_THREADS`` as a thread count (blank: 0, torch's default); ``ValueError`` naming it otherwise."""
    if not text.strip():
        return 0
    if not text.strip().isdigit() or not 0 <= int(text) <= MAX_THREADS:
        raise ValueError(f"HI3DGEN_THREADS={text!r} is not a whole number from 0 to {MAX_THREADS}")
    return int(text)
