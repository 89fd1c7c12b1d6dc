"""Runs an install plan (no bpy): one subprocess per step, read line by line by a worker thread.

Blender's main thread only reads ``Installer.snapshot()`` (from a timer) and may call ``cancel()``; the
worker writes every line to the log file, feeds pip's lines to ``PipProgress``, and at the end either
renames the completed environment into place or deletes what it made.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import TextIO

from . import install_env
from .install_plan import InstallPlan, Step
from .pip_output import InstallError, PipProgress, classify, step_verb

_NEW_GROUP: int = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0) if os.name == "nt" else 0
"Each step gets its own process group (a new session on POSIX), so cancel stops pip and its children."


@dataclass(frozen=True)
class InstallState:
    """A copy of where the install stands, safe to read on Blender's main thread."""

    stage: str = ""
    "The step's name (venv, pip, torch, requirements, verify; done at the end)."
    label: str = "Waiting to start"
    detail: str = ""
    "The package and bytes in flight."
    fraction: float = 0.0
    finished: bool = False
    ok: bool = False
    cancelled: bool = False
    error: InstallError | None = None
    python: str = ""
    "The new environment's interpreter, once it is in place."

    def text(self) -> str:
        return f"{self.label}: {self.detail}" if self.detail else self.label


class Installer:
    """One install run. ``start()`` returns at once; ``wait()`` blocks (background mode, tests)."""

    def __init__(self, plan: InstallPlan, log_path: str) -> None:
        self.plan = plan
        self.log_path = log_path
        self._state = InstallState()
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._proc: subprocess.Popen[str] | None = None
        self._thread = threading.Thread(target=self._run, name="hi3dgen-install", daemon=True)

    def start(self) -> Installer:
        self._thread.start()
        return self

    def snapshot(self) -> InstallState:
        with self._lock:
            return self._state

    def cancel(self) -> None:
        """Stop the running step; the worker then deletes what it made."""
        self._cancel.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            _terminate(proc)

    def wait(self, timeout: float | None = None) -> InstallState:
        self._thread.join(timeout)
        return self.snapshot()

    # ------------------------------------------------------------------------------------------ worker

    def _run(self) -> None:
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        error: InstallError | None = None
        with open(self.log_path, "w", encoding="utf-8", errors="replace") as log:
            try:
                self._log_plan(log)
                install_env.clear_partial(self.plan.env_dir)
                error = self._run_steps(log)
                if error is None and not self._cancel.is_set():
                    install_env.write_marker(self.plan.partial_dir, self.plan.marker)
                    install_env.finish(self.plan.partial_dir, self.plan.env_dir)
            except OSError as exc:
                error = _os_error(exc)
            except Exception as exc:  # a worker that dies silently would leave the panel waiting forever
                error = InstallError("internal", f"The installer failed: {exc!r}", "Please report this with "
                                     "the install log.", str(exc))
            finally:
                self._close(log, error)

    def _run_steps(self, log: TextIO) -> InstallError | None:
        done = 0.0
        for step in self.plan.steps:
            if self._cancel.is_set():
                return None
            self._set(stage=step.name, label=step.label, detail="", fraction=done)
            error = self._run_step(step, log, done)
            if error is not None or self._cancel.is_set():
                return error
            done += step.weight
        return None

    def _run_step(self, step: Step, log: TextIO, base: float) -> InstallError | None:
        write = log.write
        write(f"\n$ {' '.join(step.argv)}\n")
        started = time.monotonic()
        progress = PipProgress()
        tail: deque[str] = deque(maxlen=400)  # pip's last lines: the failure is read from them
        proc = subprocess.Popen(step.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                encoding="utf-8", errors="replace", env=self.plan.env, bufsize=1,
                                stdin=subprocess.DEVNULL, start_new_session=os.name != "nt",
                                creationflags=_NEW_GROUP)
        self._proc = proc
        if self._cancel.is_set():  # cancelled while it started
            _terminate(proc)
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\r\n")
            write(line + "\n")
            tail.append(line)
            if step.pip:
                progress.feed(line)
                self._set(detail=progress.text(), fraction=base + step.weight * _within(progress))
        code = proc.wait()
        self._proc = None
        write(f"[exit {code} after {time.monotonic() - started:.1f} s]\n")
        log.flush()
        if code == 0 or self._cancel.is_set():
            return None
        if step.pip:
            return classify(list(tail), self.plan.source, self.plan.source_text, step.name)
        return InstallError(f"{step.name}_failed", f"Failed while {step_verb(step.name)} (exit {code}).",
                            _step_hint(step), "\n".join(list(tail)[-6:]))

    def _close(self, log: TextIO, error: InstallError | None) -> None:
        cancelled = self._cancel.is_set()
        if error is not None or cancelled:
            try:  # renamed away at once, deleted in the background (a torch tree takes a while)
                install_env.discard_tree(self.plan.partial_dir, self.plan.env_dir)
            except OSError as exc:  # a second failure must not hide the first
                error = error or _os_error(exc)
        write = log.write
        python = "" if error or cancelled else install_env.env_python(self.plan.env_dir)
        write(f"\n== {'cancelled' if cancelled else 'failed: ' + error.code if error else 'done'}\n")
        if error is not None:
            write(f"{error.user_text()}\n{error.detail}\n")
        label = "Cancelled" if cancelled else ("Install failed" if error else "Backend installed")
        self._set(stage="done", label=label, detail="", fraction=1.0 if python else self._state.fraction,
                  finished=True, ok=bool(python), cancelled=cancelled, error=None if cancelled else error,
                  python=python)

    def _log_plan(self, log: TextIO) -> None:
        write = log.write
        write(f"Hi3DGen backend install, {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        write(f"environment: {self.plan.env_dir}\nmade by: {self.plan.base_python}\n")
        write(f"torch build: {self.plan.torch.reason}\nsource: {self.plan.source} {self.plan.source_text}\n")

    def _set(self, **changes: object) -> None:
        with self._lock:
            self._state = replace(self._state, **changes)  # type: ignore[arg-type]


def _within(progress: PipProgress) -> float:
    """A step's own progress from its output: the bytes of a download, else slowly towards 0.9."""
    if progress.bytes_total:
        return 0.8 * min(progress.bytes_done / progress.bytes_total, 1.0)
    return min(0.9, progress.lines / (progress.lines + 40))


def _terminate(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(OSError):
        if os.name == "nt":
            proc.terminate()
        else:
            os.killpg(proc.pid, signal.SIGTERM)


def _os_error(exc: OSError) -> InstallError:
    if getattr(exc, "errno", None) == 28:
        return InstallError("disk_full", "The disk is full.", "Free some space, then Install Backend again.",
                            str(exc))
    return InstallError("os_error", f"Could not write the environment: {exc}",
                        "Check that the extension's user folder is writable.", str(exc))


def _step_hint(step: Step) -> str:
    if step.name == "venv":
        return (f"'{step.argv[0]}' could not make a virtual environment: set HI3DGEN_BASE_PYTHON to a Python "
                "3.10+ that has venv (and ensurepip), then Install again.")
    return "The packages installed but do not import: see the install log, then Repair."
