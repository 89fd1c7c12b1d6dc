"""Writing user-visible files safely: to a temporary name in the same folder, then renamed into place.

A full disk, a crash or a writer that raises leaves either the old file or the complete new one under the
final name, never a truncated file, and no temporary file behind (bar a hard crash, which leaves only a
hidden ``.<name>.<random>.tmp``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from .errors import WriteFailed

_HINT = "Check that the output folder exists, is writable and has free space."


def write_atomic(path: Path | str, write: Callable[[Path], object]) -> Path:
    """Call ``write(temporary_path)``, flush it to disk and rename it onto ``path``; returns ``path``.

    On any error the temporary file is removed; an ``OSError`` becomes ``WriteFailed`` naming ``path``.
    """
    path = Path(path)
    temp = _create_temp(path)
    try:
        write(temp)
        _sync(temp)
        os.replace(temp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        if isinstance(exc, OSError):
            raise _write_failed(path, exc) from None
        raise
    return path


def write_bytes_atomic(path: Path | str, data: bytes) -> Path:
    """``write_atomic`` for a ready byte string."""
    return write_atomic(path, lambda temp: temp.write_bytes(data))


def prepare_folder(folder: Path | str) -> Path:
    """Create the output folder if needed; ``WriteFailed`` (one clear line) when it cannot hold files."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        what = "a file" if folder.is_file() else "a special file (a pipe, socket or device)"
        raise WriteFailed(f"The output {folder} is {what}, not a folder.", hint="Choose a folder with -o.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _create_temp(folder / "probe").unlink()  # access() is no proof (root, ACLs, read-only mounts)
    except OSError as exc:
        raise _write_failed(folder, exc) from None
    return folder


def _create_temp(path: Path) -> Path:
    """A new empty file next to ``path`` (default permissions, so the renamed file gets them too)."""
    for _ in range(8):
        temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        except OSError as exc:
            raise _write_failed(path, exc) from None
        return temp
    raise WriteFailed(f"Cannot find a free temporary name next to {path}.", hint=_HINT)


def _sync(temp: Path) -> None:
    fd = os.open(temp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_failed(path: Path, exc: OSError) -> WriteFailed:
    reason = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else (exc.strerror or str(exc))
    return WriteFailed(f"Cannot write {path}: {reason}.", hint=_HINT)
