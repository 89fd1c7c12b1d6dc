"""Hi3DGen for Blender: image -> detailed mesh, computed by a local backend process.

Registration only; the work is in the modules. The bpy-using modules are imported by ``register`` so that
the bpy-free ones (settings, client, job) stay importable by plain Python tests. After registration the
scripting API is ``<this package>.api.generate`` (see api.py).
"""

from __future__ import annotations

import atexit
from typing import Any

_REGISTERED: list[Any] = []


def _classes() -> tuple[Any, ...]:
    from . import install_ops, operators, preferences, properties, ui, weights_ops

    return (*preferences.classes, *properties.classes, *operators.classes, *weights_ops.classes,
            *install_ops.classes, *ui.classes)


def register() -> None:
    import bpy

    from . import api, generation, install_ops, properties, weights_ops  # noqa: F401 - api: the public scripting module

    for cls in _classes():
        bpy.utils.register_class(cls)
        _REGISTERED.append(cls)
    properties.register()
    atexit.register(generation.shutdown)
    atexit.register(weights_ops.shutdown)
    atexit.register(install_ops.shutdown)


def unregister() -> None:
    import bpy

    from . import generation, install_ops, properties, weights_ops

    atexit.unregister(weights_ops.shutdown)
    weights_ops.shutdown()
    atexit.unregister(install_ops.shutdown)
    install_ops.shutdown()
    atexit.unregister(generation.shutdown)
    generation.shutdown()
    properties.unregister()
    while _REGISTERED:
        bpy.utils.unregister_class(_REGISTERED.pop())
