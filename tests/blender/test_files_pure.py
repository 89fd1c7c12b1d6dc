"""The add-on's safe file read (bpy-free): regular files only, never blocking, never more than the bound."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from blender_addon.files import FileRefused, read_regular_file


def outcome_of(path: str, limit: int = 1 << 20) -> object:
    """What ``read_regular_file`` returned or raised; fails if it is still blocked after a generous 60 s."""
    result: list[object] = []

    def run() -> None:
        try:
            result.append(read_regular_file(path, limit))
        except (OSError, FileRefused) as exc:
            result.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(60)
    assert result, "the read blocked"
    return result[0]


NO_FIFOS = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")


@NO_FIFOS
def test_pipes_devices_and_sockets_are_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "socket.png"))
    try:
        for path, kind in ((fifo, "named pipe"), (Path("/dev/zero"), "device"), (tmp_path / "socket.png", "socket")):
            refused = outcome_of(str(path))
            assert isinstance(refused, FileRefused) and kind in str(refused) and "not a regular file" in str(refused)
    finally:
        sock.close()


@NO_FIFOS
def test_a_pipe_swapped_in_after_the_check_does_not_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fifo = tmp_path / "swapped.png"
    os.mkfifo(fifo)
    regular, real_stat = os.stat(__file__), os.stat
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: regular if str(p) == str(fifo) else real_stat(p, *a, **k))
    refused = outcome_of(str(fifo))
    assert isinstance(refused, FileRefused) and "named pipe" in str(refused)


def test_regular_files_folders_missing_and_the_bound(tmp_path: Path) -> None:
    path = tmp_path / "-a\nb.png"
    path.write_bytes(b"x" * 5000)
    assert outcome_of(str(path)) == b"x" * 5000
    assert isinstance(outcome_of(str(path), limit=4999), FileRefused)
    assert isinstance(outcome_of(str(tmp_path)), IsADirectoryError)
    assert isinstance(outcome_of(str(tmp_path / "gone.png")), FileNotFoundError)
