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
        """These settings with the thread count and memory values checked (a hinted ``BadInput`` names a wrong one)."""
        from .errors import BadInput
        from .memory import check_mode

        check_mode(self.memory)
        check_threads(self.threads)
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
    """``HI3DGEN_THREADS`` as a thread count (blank: 0, torch's default); a hinted ``BadInput`` naming it
    otherwise."""
    from .errors import BadInput

    if not text.strip():
        return 0
    if not text.strip().isdigit():
        raise BadInput(f"HI3DGEN_THREADS={text[:40]!r} is not a whole number.", hint=THREADS_HINT)
    return int(text)


THREADS_HINT = (f"Give --threads (or HI3DGEN_THREADS) as a whole number from 1 to {MAX_THREADS}; 0 or blank is "
                "torch's default.")


def check_threads(threads: object, allow_default: bool = True) -> int:
    """``threads`` as a count in 1..MAX_THREADS (also 0, torch's default, when ``allow_default``); the one check
    of every thread count (the flag, the environment, ``threads.apply_threads``). Hinted ``BadInput`` otherwise."""
    from .errors import BadInput

    low = 0 if allow_default else 1
    if isinstance(threads, bool) or not isinstance(threads, int) or not low <= threads <= MAX_THREADS:
        raise BadInput(f"The thread count cannot be {str(threads)[:40]!r}.", hint=THREADS_HINT)
    return threads
