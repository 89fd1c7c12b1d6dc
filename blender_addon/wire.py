"""The wire contract, imported from wherever the backend package sits.

In the built extension ``backend/`` is bundled inside the add-on folder; in the development tree it is the
repository's top-level package. Only ``backend.protocol`` is ever imported by the add-on.
"""

from __future__ import annotations

try:
    from .backend import protocol  # type: ignore[import-not-found]
except ImportError:  # development tree: blender_addon/ next to backend/
    from backend import protocol

__all__ = ["protocol"]
