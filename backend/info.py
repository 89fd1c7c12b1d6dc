"""``python -m backend info``: versions, devices, engines with their parameters, and every downloadable model.

The same facts as the handshake the add-on reads (``Server.hello``), plus every model
``download`` knows (``backend/weights.py``) and whether it is present; printed for people, or as one JSON
object with ``--json``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from .settings import BackendSettings


def info_report(settings: BackendSettings) -> dict[str, Any]:
    """Everything ``info`` prints, as plain JSON-able data (never touches the network)."""
    from . import protocol as P
    from .server import Server
    from .weights import MODELS, status

    hello = Server(sys.stdin.buffer, sys.stdout.buffer, settings).hello()
    models = []
    for spec in MODELS.values():
        present, missing = status(spec.name, settings)
        models.append({"name": spec.name, "repo_id": spec.repo_id, "description": spec.description,
                       "licence": spec.licence, "present": present, "missing": missing})
    return {"backend_version": hello.backend_version, "protocol": P.PROTOCOL_VERSION,
            "python_version": hello.python_version, "torch_version": hello.torch_version,
            "devices": hello.devices, "weights_dir": settings.weights_dir, "engines": hello.engines,
            "models": models}


def print_info(settings: BackendSettings, as_json: bool = False) -> int:
    """Print the report (text or JSON) to stdout; returns the exit code."""
    report = info_report(settings)
    if as_json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"backend {report['backend_version']} (protocol {report['protocol']}), "
          f"python {report['python_version']}, torch {report['torch_version'] or '-'}")
    print(f"devices: {', '.join(report['devices'])}")
    for engine in report["engines"]:
        state = "ready" if engine["available"] else f"missing: {', '.join(engine['missing'])}"
        print(f"\nengine {engine['name']}: {state}")
        print("  parameters (--param NAME=VALUE):")
        for param in engine["params"]:
            print(f"    {param['name']:<18} {_value_range(param):<34} {param['description']}")
    print("\nmodels (python -m backend download NAME ...):")
    for model in report["models"]:
        state = "present" if model["present"] else "missing"
        print(f"  {model['name']:<15} {state:<8} {model['repo_id']:<38} {model['description']}")
    return 0


def _value_range(param: dict[str, Any]) -> str:
    """``int 256 (16 to 1024)``, ``enum auto (auto|estimate|learned)``, ``bool true``."""
    default = json.dumps(param["default"])
    if param["type"] == "enum":
        return f"enum {param['default']} ({'|'.join(param['options'])})"
    if param["min"] is not None or param["max"] is not None:
        return f"{param['type']} {default} ({_number(param['min'])} to {_number(param['max'])})"
    return f"{param['type']} {default}"


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return str(int(value)) if float(value).is_integer() else str(value)
