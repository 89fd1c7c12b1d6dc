"""``python -m backend download``: show the plan (sizes, licences), then fetch with progress.

On a terminal: the plan, a question (unless ``--yes``), one updating progress line on stderr, and
``<model>: <folder>`` on stdout per model. With ``--json``: one JSON object per line on stdout, which is
what the add-on reads::

    {"event": "plan", "root": ..., "remaining": N, "free": N, "models": [{name, repo_id, licence, ...}]}
    {"event": "progress", "model": ..., "file": ..., "done": N, "total": N, "rate": B/s, "eta": s|null}
    {"event": "done", "folders": {model: folder}}
    {"event": "error", "code": ..., "message": ..., "hint": ...}     (code "cancelled" after SIGTERM/Ctrl-C)

``--plan`` stops after the plan. SIGTERM (the add-on's Cancel) stops at the next chunk; parts stay.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from .errors import BackendError
from .fetch import FetchCancelled, Progress, human_bytes, human_seconds
from .settings import BackendSettings

EXIT_CANCELLED = 130
LOG_EVERY = 10.0
"Seconds between progress lines when stderr is not a terminal (a log file)."


def run_download(settings: BackendSettings, names: list[str], as_json: bool = False, plan_only: bool = False,
                 assume_yes: bool = False) -> int:
    """The ``download`` command; returns its exit code."""
    from .downloads import plan_download, run_plan

    out = _Reporter(sys.stdout, sys.stderr, as_json)
    cancel = threading.Event()
    try:
        plan = plan_download(names, settings)
        out.plan(plan.to_json(), _free_bytes(Path(plan.root)))
        if plan_only:
            return 0
        if plan.remaining and not as_json and not assume_yes and sys.stdin.isatty() and not _agreed():
            print("Nothing downloaded.", file=sys.stderr)
            return 1
        with _cancel_on_sigterm(cancel):
            folders = run_plan(plan, out.progress, cancel)
    except KeyboardInterrupt:
        out.error("cancelled", "Download cancelled.", "Run the same command again to resume.")
        return EXIT_CANCELLED
    except BackendError as exc:
        out.error(exc.code, exc.message, exc.hint)
        return EXIT_CANCELLED if exc.code == "cancelled" else 1
    out.done({name: str(folder) for name, folder in folders.items()})
    return 0


class _Reporter:
    """Writes the events either as JSON lines or for a person."""

    def __init__(self, out: TextIO, err: TextIO, as_json: bool) -> None:
        self.out, self.err, self.as_json = out, err, as_json
        self.tty = err.isatty()
        self._line_open = False
        self._last_file = ""
        self._last_line = 0.0

    def _json(self, event: str, **fields: Any) -> None:
        self.out.write(json.dumps({"event": event, **fields}) + "\n")
        self.out.flush()

    def plan(self, plan: dict[str, Any], free: int | None) -> None:
        if self.as_json:
            self._json("plan", **plan, free=free)
            return
        for m in plan["models"]:
            if m["found_at"]:
                state = f"present at {m['found_at']}"
            else:
                here = m["present"] + m["partial"]
                have = f", {human_bytes(here)} already here" if here else ""
                state = f"{human_bytes(m['total'])} ({m['files']} files to fetch{have})"
            print(f"{m['name']:<15} {m['repo_id']:<38} licence {m['licence'] or '-'}; {state}", file=self.out)
        room = f", {human_bytes(free)} free" if free is not None else ""
        print(f"To download: {human_bytes(plan['remaining'])} into {plan['root']}{room}", file=self.out)
        self.out.flush()

    def progress(self, p: Progress, model: str) -> None:
        if self.as_json:
            self._json("progress", model=model, file=p.file, done=p.done, total=p.total,
                       rate=round(p.rate, 1), eta=None if p.eta is None else round(p.eta, 1))
            return
        line = progress_text(p)
        if self.tty:
            self.err.write("\r" + line.ljust(78)[:120])
            self._line_open = True
        elif p.file != self._last_file or p.done == p.total or time.monotonic() - self._last_line >= LOG_EVERY:
            self.err.write(f"{model}: {p.file}: {line}\n")  # a plain log: per file, and now and then
            self._last_line = time.monotonic()
        self._last_file = p.file
        self.err.flush()

    def done(self, folders: dict[str, str]) -> None:
        self._end_line()
        if self.as_json:
            self._json("done", folders=folders)
            return
        for name, folder in folders.items():
            print(f"{name}: {folder}", file=self.out)

    def error(self, code: str, message: str, hint: str) -> None:
        self._end_line()
        if self.as_json:
            self._json("error", code=code, message=message, hint=hint)
        else:
            print(f"{message} {hint}".strip(), file=self.err)

    def _end_line(self) -> None:
        if self._line_open:
            self.err.write("\n")
            self._line_open = False


def progress_text(p: Progress) -> str:
    """'1.2 GB of 2.5 GB (48%), 35.0 MB/s, 37 s left'."""
    percent = 100.0 * p.done / p.total if p.total else 100.0
    rate = f"{human_bytes(p.rate)}/s" if p.rate else "-"
    return (f"{human_bytes(p.done)} of {human_bytes(p.total)} ({percent:.0f}%), {rate}, "
            f"{human_seconds(p.eta)} left")


def _free_bytes(root: Path) -> int | None:
    probe = root.absolute()
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    try:
        return int(shutil.disk_usage(str(probe)).free)
    except OSError:
        return None


def _agreed() -> bool:
    try:
        return input("Download? [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


class _cancel_on_sigterm:
    """While active, SIGTERM (the add-on's Cancel) sets ``cancel`` and interrupts a read that waits on a
    stalled server, so the command reports the cancel and exits; what is in the ``.part`` stays."""

    def __init__(self, cancel: threading.Event) -> None:
        self.cancel = cancel
        self.saved: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        self.cancel.set()
        raise FetchCancelled("Download cancelled.", hint="Run the download again to resume where it stopped.")

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGTERM"):
            self.saved = signal.signal(signal.SIGTERM, self._handle)

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            signal.signal(signal.SIGTERM, self.saved)
