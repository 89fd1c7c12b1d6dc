"""One filter's verdict."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class FilterResult:
    name: str
    passed: bool
    value: float
    "What was measured."
    threshold: float
    "The config threshold it was held against."
    reason: str = ""
    "Why it failed, in words (empty when it passed)."

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def verdict(name: str, value: float, threshold: float, passed: bool, what: str) -> FilterResult:
    """A result whose reason reads '<what> <value> (limit <threshold>)' when it failed."""
    reason = "" if passed else f"{what} {value:.6g} (limit {threshold:.6g})"
    return FilterResult(name, bool(passed), float(value), float(threshold), reason)
