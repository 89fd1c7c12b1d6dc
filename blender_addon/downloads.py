"""Weight downloads seen from Blender (no bpy): run ``python -m backend download --json``, read its lines.

The command goes through the same interpreter, environment and Remote Command prefix as the backend
itself (``BackendConfig.command`` with another argv), so a remote GPU box downloads into its own weights
folder. ``fetch_plan`` asks for the plan (sizes, licences, free space) and waits for it; ``DownloadRun``
runs the download in a child process, a thread parses its JSON lines, and the main thread reads
``fraction`` and ``status_text`` for the progress bar. Cancel ends the child; the ``.part`` files stay, so
the next run resumes.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import os
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Any

from .settings import BackendConfig

GROUP_LABELS = {"hi3dgen": "Hi3DGen weights (NiRNE normals + geometry)",
                "segmenter": "Learned segmenter (optional)"}
LOG_LINES = 50


class DownloadFailed(Exception):
    def __init__(self, message: str, hint: str = "", code: str = "download_failed") -> None:
        super().__init__(message)
        self.message, self.hint, self.code = message, hint, code


@dataclass(frozen=True)
class ModelInfo:
    name: str
    repo_id: str
    licence: str
    total: int
    remaining: int
    found_at: str = ""


@dataclass(frozen=True)
class Plan:
    root: str
    remaining: int
    free: int | None
    models: tuple[ModelInfo, ...] = ()

    def lines(self) -> list[str]:
        """What the confirmation dialog shows: one line per model, then the total and the free space."""
        out = []
        for m in self.models:
            state = "already present" if m.found_at or not m.remaining else human_bytes(m.remaining)
            out.append(f"{m.name} ({m.repo_id}): {state}; licence {m.licence or 'see the model page'}")
        out.append(f"Download {human_bytes(self.remaining)} into {self.root}")
        if self.free is not None:
            out.append(f"{human_bytes(self.free)} free there" + (" - NOT ENOUGH" if self.free < self.remaining
                                                                  else ""))
        return out


@dataclass
class Status:
    """What the child reported so far."""

    done: int = 0
    total: int = 0
    rate: float = 0.0
    eta: float | None = None
    model: str = ""
    file: str = ""
    plan: Plan | None = None
    folders: dict[str, str] = field(default_factory=dict)
    error: DownloadFailed | None = None
    finished: bool = False


def download_config(config: BackendConfig, names: list[str], plan_only: bool = False) -> BackendConfig:
    """``config`` that runs ``python -m backend download NAMES --json`` instead of ``serve``."""
    argv = (config.python, "-m", "backend", "download", *names, "--json", "--plan" if plan_only else "--yes")
    return dataclasses.replace(config, argv=argv)


def parse_line(line: str) -> dict[str, Any] | None:
    """One JSON event of the download command, or None for anything else (a remote login banner)."""
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) and isinstance(value.get("event"), str) else None


def parse_plan(event: dict[str, Any]) -> Plan:
    models = tuple(ModelInfo(str(m.get("name", "")), str(m.get("repo_id", "")), str(m.get("licence", "")),
                             _int(m.get("total")), _int(m.get("remaining")), str(m.get("found_at") or ""))
                   for m in event.get("models", []) if isinstance(m, dict))
    free = event.get("free")
    return Plan(str(event.get("root", "")), _int(event.get("remaining")),
                free if isinstance(free, int) and not isinstance(free, bool) else None, models)


def apply_event(status: Status, event: dict[str, Any]) -> None:
    """Update ``status`` with one parsed event."""
    kind = event["event"]
    if kind == "plan":
        status.plan = parse_plan(event)
        status.total = status.plan.remaining
    elif kind == "progress":
        status.done, status.total = _int(event.get("done")), _int(event.get("total"))
        rate, eta = event.get("rate"), event.get("eta")
        status.rate = float(rate) if isinstance(rate, (int, float)) else 0.0
        status.eta = float(eta) if isinstance(eta, (int, float)) else None
        status.model, status.file = str(event.get("model", "")), str(event.get("file", ""))
    elif kind == "done":
        folders = event.get("folders")
        status.folders = {str(k): str(v) for k, v in folders.items()} if isinstance(folders, dict) else {}
        status.finished = True
    elif kind == "error":
        status.error = DownloadFailed(str(event.get("message", "The download failed.")),
                                      str(event.get("hint", "")), str(event.get("code", "download_failed")))
        status.finished = True


def status_text(status: Status) -> str:
    """'dinov2: 1.2 GB of 2.5 GB, 35.0 MB/s, 37 s left' for the progress bar."""
    if status.total <= 0:
        return "Starting the download..."
    rate = f", {human_bytes(status.rate)}/s" if status.rate else ""
    left = f", {human_seconds(status.eta)} left" if status.eta is not None else ""
    where = f"{status.model}: " if status.model else ""
    return f"{where}{human_bytes(status.done)} of {human_bytes(status.total)}{rate}{left}"


def fraction(status: Status) -> float:
    return min(1.0, status.done / status.total) if status.total > 0 else 0.0


def fetch_plan(config: BackendConfig, names: list[str], timeout: float = 60.0) -> Plan:
    """Run the command with ``--plan`` and return the plan; ``DownloadFailed`` with its message otherwise."""
    run = DownloadRun(download_config(config, names, plan_only=True))
    status = run.wait(timeout)
    if status.error is not None:
        raise status.error
    if status.plan is None:
        raise DownloadFailed("The backend gave no download plan.", hint=_hint(run.log_tail()))
    return status.plan


class DownloadRun:
    """One download child process; a thread turns its stdout lines into ``status``."""

    def __init__(self, config: BackendConfig) -> None:
        if config.prefix_problem:
            raise DownloadFailed(config.prefix_problem)
        self.status = Status()
        self.cancelled = False
        self._lock = threading.Lock()
        self._log: collections.deque[str] = collections.deque(maxlen=LOG_LINES)
        try:
            self.proc = subprocess.Popen(config.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, env=config.process_env(dict(os.environ)))
        except OSError as exc:
            raise DownloadFailed(f"Could not start the backend to download: {exc}",
                                 hint="Check the Backend Python preference (or $HI3DGEN_PYTHON).") from None
        self._stderr = threading.Thread(target=self._read_log, name="hi3dgen-download-log", daemon=True)
        self._stderr.start()
        self._reader = threading.Thread(target=self._read_events, name="hi3dgen-download", daemon=True)
        self._reader.start()

    def _read_events(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            event = parse_line(raw.decode("utf-8", "replace"))
            if event is not None:
                with self._lock:
                    apply_event(self.status, event)
        code = self.proc.wait()
        self._stderr.join(timeout=2.0)
        with self._lock:
            if self.status.error is None and code != 0:
                self._ended_badly(code)
            self.status.finished = True

    def _ended_badly(self, code: int) -> None:
        if self.cancelled:
            self.status.error = DownloadFailed("Download cancelled.", "Press Download Weights again to resume.",
                                               "cancelled")
        elif self.status.error is None:
            log = self.log_tail()
            self.status.error = DownloadFailed(f"The download command ended with code {code}.", _hint(log))

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        for raw in iter(self.proc.stderr.readline, b""):
            self._log.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def snapshot(self) -> Status:
        """A copy of the status, safe to read on the main thread."""
        with self._lock:
            return dataclasses.replace(self.status, folders=dict(self.status.folders))

    @property
    def finished(self) -> bool:
        with self._lock:
            return self.status.finished

    def wait(self, timeout: float | None = None) -> Status:
        """Block until the child ended (``DownloadFailed`` after ``timeout`` seconds, the child ended)."""
        self._reader.join(timeout)
        if self._reader.is_alive():
            self.cancel()
            self._reader.join(10.0)
            raise DownloadFailed(f"The download command did not finish within {timeout:.0f} s.",
                                 hint=_hint(self.log_tail()))
        return self.snapshot()

    def cancel(self, grace: float = 5.0) -> None:
        """End the child (it stops at its next chunk; what arrived stays for the next run)."""
        self.cancelled = True
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(5.0)

    def log_tail(self, lines: int = 12) -> str:
        return "\n".join(list(self._log)[-lines:])


def _hint(log: str) -> str:
    if "No module named 'backend'" in log:
        return "The backend package is not found: reinstall the add-on, or set the Remote Backend Folder."
    if "invalid choice" in log or "unrecognized arguments" in log:
        return "The backend is older than the add-on: install both from the same release."
    last = log.strip().splitlines()[-1:] if log.strip() else []
    return f"Backend said: {last[0]}" if last else "Check the Backend Python preference."


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KB' (powers of 1000, as the Hub shows sizes)."""
    for unit in ("B", "KB", "MB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def human_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def wanted_models(missing: list[Any]) -> list[str]:
    """The downloadable names among an engine's ``missing`` list (it may also name 'torch')."""
    return [str(m) for m in missing if isinstance(m, str) and m and m != "torch"]
