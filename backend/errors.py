"""Errors the backend reports to its client as data (code, message, hint).

Every failure a user can meet is a ``BackendError`` with a stable ``code`` and a ``hint`` that says
what to do; anything else reaching the server loop is reported as ``internal``.
"""

from __future__ import annotations


class BackendError(Exception):
    """A failure with a stable code, a readable message and what the user can do about it."""

    code = "error"

    def __init__(self, message: str, hint: str = "", code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if code is not None:
            self.code = code


class BadInput(BackendError):
    """The request or its image cannot be used (unreadable, too large, empty mask...)."""

    code = "bad_input"


class WeightsMissing(BackendError):
    """Model files are absent or do not match the expected layout."""

    code = "weights_missing"


class WeightsInvalid(BackendError):
    """A weights file is corrupt or its tensors do not match the network (names the first bad key)."""

    code = "weights_invalid"


class Cancelled(BackendError):
    """The client cancelled the request; raised between steps."""

    code = "cancelled"


class OutOfMemory(BackendError):
    """The device ran out of memory; the hint suggests a smaller setting or another device."""

    code = "out_of_memory"


class EmptyResult(BackendError):
    """The model produced no geometry (empty structure or no surface)."""

    code = "empty_result"


class WriteFailed(BackendError):
    """An output file or folder cannot be written (not a folder, no permission, disk full)."""

    code = "write_failed"


class InsufficientMemory(BackendError):
    """Refused before running: the predicted peak does not fit the device's free memory (backend/memory_plan.py);
    the hint says what to change (memory offload, fp16, a lower setting)."""

    code = "insufficient_memory"
