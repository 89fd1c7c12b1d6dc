"""Hi3DGen backend: the torch side of Hi3DGen for Blender, run as its own process.

Nothing happens at import time; the entry point is ``python -m backend``.
"""

__version__ = "0.1.0"
