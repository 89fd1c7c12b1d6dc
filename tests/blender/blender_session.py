"""Shared by the bpy test modules: one headless Blender per pytest process, with a throwaway user folder.

Import this before ``bpy``: BLENDER_USER_RESOURCES must be set before bpy starts, so extensions install
into a temporary folder instead of the real user's configuration.
"""

from __future__ import annotations

import contextlib
import os
import signal
import struct
import tempfile
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

USER_RESOURCES = os.environ.setdefault("BLENDER_USER_RESOURCES",
                                       tempfile.mkdtemp(prefix="hi3dgen_blender_user_"))

import bpy  # noqa: E402

__all__ = ["bpy", "clear_scene", "scene_snapshot", "write_png", "backend_children", "backends_killed_after"]


def clear_scene() -> None:
    """Remove every object and the data a generation makes, without touching preferences or add-ons."""
    for kind in ("objects", "meshes", "materials", "images", "collections", "cameras"):
        collection = getattr(bpy.data, kind)
        for item in list(collection):
            collection.remove(item)


def scene_snapshot() -> dict[str, list[str]]:
    """Names of everything a generation could add (objects, data, collections)."""
    data = bpy.data
    return {kind: sorted(x.name for x in getattr(data, kind))
            for kind in ("objects", "meshes", "images", "materials", "collections", "node_groups")}


def write_png(path: Path, size: int = 96) -> Path:
    """An RGBA PNG of a shaded disc on a transparent background (own minimal encoder)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    r = np.hypot(x - size / 2, y - size / 2) / (size * 0.4)
    inside = r < 1.0
    shade = np.clip(1.0 - 0.6 * r, 0, 1)
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., 0] = (200 * shade).astype(np.uint8)
    rgba[..., 1] = (120 * shade).astype(np.uint8)
    rgba[..., 2] = 60
    rgba[..., 3] = np.where(inside, 255, 0)
    raw = b"".join(b"\x00" + rgba[row].tobytes() for row in range(size))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path.write_bytes(png)
    return path


def backend_children() -> list[int]:
    """Live (not zombie) child processes of this process that run the backend or the fake one."""
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        state, ppid = fields[0], int(fields[1])
        if ppid == me and state != "Z" and ("backend" in cmdline or "fake_backend" in cmdline):
            found.append(int(entry.name))
    return found


@contextlib.contextmanager
def backends_killed_after(seconds: float) -> Iterator[None]:
    """A safety net, not an assertion: should the code under test wait on a backend forever, SIGKILL this
    process's backends after ``seconds``, so the test fails on what it sees (a died backend) instead of
    hanging the test run."""
    done = threading.Event()

    def guard() -> None:
        if done.wait(seconds):
            return
        for pid in backend_children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    thread = threading.Thread(target=guard, name="backend-watchdog", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
