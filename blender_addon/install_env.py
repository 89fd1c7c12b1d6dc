"""The backend environment on disk (no bpy): its marker, its state, and the rename that completes it.

A finished environment holds MARKER (the add-on version and the hash of the pins it was made from). One
being made lives under ``<env>.partial`` and only becomes ``<env>`` once every step succeeded, so a
cancelled, failed or crashed install never leaves an environment that could be used.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import threading
import time
from dataclasses import dataclass

from .install_plan import MARKER, PARTIAL_SUFFIX, env_python

TRASH_SUFFIX = ".trash"
"A removed environment is renamed to <env>.trash-<id> and deleted from there, in the background."


@dataclass(frozen=True)
class EnvStatus:
    state: str
    "missing, ready, outdated or broken."
    message: str
    marker: dict[str, str] | None = None

    @property
    def needs_repair(self) -> bool:
        return self.state in ("outdated", "broken")


def read_marker(env_dir: str) -> dict[str, str] | None:
    """The marker of a finished environment, None when it is missing or unreadable."""
    path = os.path.join(env_dir, MARKER)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    return {str(k): str(v) for k, v in data.items()}


def write_marker(env_dir: str, marker: dict[str, str]) -> None:
    """Write the marker atomically (a half-written marker would read as a broken environment)."""
    path = os.path.join(env_dir, MARKER)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(marker, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def env_status(env_dir: str, addon_version: str, pins_sha256: str) -> EnvStatus:
    """Whether the environment exists, was made by this release with these pins, and has its python."""
    if not os.path.isdir(env_dir):
        return EnvStatus("missing", "No backend environment installed yet.")
    marker = read_marker(env_dir)
    if marker is None or not os.path.isfile(env_python(env_dir)):
        return EnvStatus("broken", "The backend environment is incomplete or damaged: repair it.", marker)
    made_for = marker.get("addon_version", "?")
    if made_for != addon_version:
        return EnvStatus("outdated", f"The backend environment was made for add-on {made_for} (this is "
                                     f"{addon_version}): repair it to update its packages.", marker)
    if marker.get("pins_sha256") != pins_sha256:
        return EnvStatus("outdated", "The backend environment's packages differ from this release's pins: "
                                     "repair it to update them.", marker)
    return EnvStatus("ready", f"Backend environment ready (torch {marker.get('torch', '?')}).", marker)


def clear_partial(env_dir: str) -> None:
    """Remove what an earlier, interrupted install left (a half-made or a replaced environment)."""
    for path in (env_dir + PARTIAL_SUFFIX, env_dir + ".old"):
        remove_tree(path)
    for path in glob.glob(glob.escape(env_dir) + TRASH_SUFFIX + "*"):
        shutil.rmtree(path, ignore_errors=True)  # a deletion that Blender's exit cut short


def finish(partial_dir: str, env_dir: str) -> threading.Thread | None:
    """Put the completed environment in place: the old one (if any) moves aside first and is deleted
    after, so ``env_dir`` is at every moment either the old environment, absent, or the new one."""
    old = env_dir + ".old"
    remove_tree(old)
    if os.path.exists(env_dir):
        _rename(env_dir, old)
    _rename(partial_dir, env_dir)
    _fix_scripts(os.path.dirname(env_python(env_dir)), partial_dir, env_dir)
    _fix_file(os.path.join(env_dir, "pyvenv.cfg"), partial_dir.encode(), env_dir.encode())
    return discard_tree(old, env_dir)


def discard_tree(path: str, env_dir: str) -> threading.Thread | None:
    """Move a folder out of the way at once (a rename) and delete it in a background thread: deleting a
    torch environment's 15,000 files takes from seconds to minutes, and Blender must stay responsive.
    Returns the deleting thread (None when there was nothing to delete)."""
    if not os.path.isdir(path) or os.path.islink(path):
        return None
    trash = f"{env_dir}{TRASH_SUFFIX}-{os.getpid()}-{time.monotonic_ns()}"
    _rename(path, trash)
    thread = threading.Thread(target=shutil.rmtree, args=(trash,), kwargs={"ignore_errors": True},
                              name="hi3dgen-delete-env", daemon=True)
    thread.start()
    return thread


def remove_tree(path: str) -> None:
    """Delete a folder tree (nothing when it is not there); a file or link is refused, never followed."""
    if os.path.islink(path) or os.path.isfile(path):
        raise OSError(f"'{path}' is not a folder; it is left as it is.")
    if os.path.isdir(path):
        shutil.rmtree(path)


def _rename(src: str, dst: str, tries: int = 5) -> None:
    """os.rename, tried again a few times: on Windows a virus scanner may hold a file for a moment."""
    for n in range(tries):
        try:
            os.rename(src, dst)
            return
        except PermissionError:
            if n == tries - 1:
                raise
            time.sleep(0.5 * (n + 1))


def _fix_scripts(bin_dir: str, old_prefix: str, new_prefix: str) -> None:
    """The environment's console scripts name their interpreter by the path it was made at: point them at
    the renamed folder (``python -m`` works either way; this keeps bin/pip and activate usable)."""
    if not os.path.isdir(bin_dir):
        return
    for entry in os.scandir(bin_dir):
        if entry.is_file(follow_symlinks=False) and entry.stat().st_size < 1_000_000:
            _fix_file(entry.path, old_prefix.encode(), new_prefix.encode())


def _fix_file(path: str, old: bytes, new: bytes) -> None:
    """Replace ``old`` by ``new`` in a small text file (binaries, with NUL bytes, are left alone)."""
    if not os.path.isfile(path) or os.path.islink(path):
        return
    with open(path, "rb") as f:
        data = f.read()
    if old in data and b"\0" not in data:
        with contextlib.suppress(OSError), open(path, "wb") as f:
            f.write(data.replace(old, new))
