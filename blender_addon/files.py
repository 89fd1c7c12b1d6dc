"""A user's file read safely (no bpy): regular files only, never blocking on a pipe, never more than a bound.

The backend reads paths by the same rule (``backend.images.read_image_bytes``); the add-on keeps its own
copy because it imports nothing of the backend but the protocol.
"""

from __future__ import annotations

import os
import stat


class FileRefused(Exception):
    """The path is not a regular file, or the file is over the size bound; the message says which."""


def special_kind(mode: int) -> str | None:
    """What a non-regular, non-folder file is ("a named pipe", "a device", "a socket"); None for a regular one."""
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a plain file"


def read_regular_file(path: str, limit: int) -> bytes:
    """The bytes of the regular file ``path``.

    Raises ``FileRefused`` for pipes, devices and sockets (checked before opening and again on the opened
    file, which is opened non-blocking so a swapped-in pipe cannot block) and for files over ``limit``
    bytes (at most ``limit + 1`` are read); ``IsADirectoryError``, ``FileNotFoundError`` and other
    ``OSError`` as ``open`` does.
    """
    _check(os.stat(path), limit)
    with open(path, "rb", opener=_nonblocking) as f:
        _check(os.fstat(f.fileno()), limit)
        data = f.read(limit + 1)
    if len(data) > limit:
        raise FileRefused(f"The file is over {limit >> 20} MiB.")
    return data


def _check(info: os.stat_result, limit: int) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError("is a folder")
    kind = special_kind(info.st_mode)
    if kind is not None:
        raise FileRefused(f"This is {kind}, not a regular file; pipes, devices and sockets are not read.")
    if info.st_size > limit:
        raise FileRefused(f"The file is too large ({info.st_size >> 20} MiB, at most {limit >> 20} MiB).")


def _nonblocking(path: str, flags: int) -> int:
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
