"""The backend process seen from Blender (no bpy): start it, read its frames on a thread, stop it.

A reader thread decodes frames from the child's stdout into a queue (the handshake is kept aside as
``hello``); a second thread drains stderr into a short ring buffer so the child can never block on a full
pipe. Blender's main thread only sends frames and takes events off the queue.
"""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any

from .settings import BackendConfig
from .wire import protocol as P

LOG_LINES = 200


class BackendUnavailable(Exception):
    """The backend could not be started, did not answer, or went away."""

    def __init__(self, message: str, hint: str = "", log: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.log = log


@dataclass
class Event:
    """What the reader thread saw: a message, a bad frame, or the end of the stream."""

    kind: str
    "'message', 'protocol_error' or 'exit'."
    message: P.Message | None = None
    request_id: int = 0
    error: str = ""
    at: float = 0.0


class BackendProcess:
    """One running backend: the child process, its reader threads and its event queue."""

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.events: queue.Queue[Event] = queue.Queue()
        self.hello: P.Hello | None = None
        self.hello_event = threading.Event()
        self.last_frame = time.monotonic()
        self.garbled = ""
        "The first bad frame seen before the handshake (stray output on the backend's stdout)."
        self._log: collections.deque[str] = collections.deque(maxlen=LOG_LINES)
        self._log_count = 0
        self._log_lock = threading.Lock()
        self._next_id = 0
        self._id_lock = threading.Lock()
        if config.prefix_problem:
            raise BackendUnavailable(config.prefix_problem)
        try:
            self.proc = subprocess.Popen(
                config.command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=config.process_env(dict(os.environ)), bufsize=0,
            )
        except OSError as exc:
            raise BackendUnavailable(
                f"Could not start the backend: {exc}",
                hint="Check the Backend Python preference (or $HI3DGEN_PYTHON).") from None
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._writer = P.FrameWriter(self.proc.stdin)
        self._reader = P.FrameReader(self.proc.stdout)
        self._log_thread = threading.Thread(target=self._read_log, name="hi3dgen-log", daemon=True)
        self._log_thread.start()
        threading.Thread(target=self._read_frames, name="hi3dgen-frames", daemon=True).start()

    # ---------------------------------------------------------------------------------------- threads

    def _read_frames(self) -> None:
        cut = ""
        while True:
            try:
                item = self._reader.read()
            except P.ProtocolError as exc:
                if exc.code == "truncated":  # the output ended mid-frame: the backend went away while replying
                    cut = " in the middle of a reply"
                    break
                if self.hello is None:  # stray output before the handshake is skipped, remembered for the timeout
                    self.garbled = self.garbled or f"{exc} ({exc.code})"
                else:
                    self._put(Event("protocol_error", error=f"{exc} ({exc.code})"))
                if exc.skip is None and not self._reader.resync():
                    break
                continue
            except (OSError, ValueError) as exc:
                self._put(Event("protocol_error", error=f"reading the backend failed: {exc}"))
                break
            if item is None:
                break
            msg, request_id = item
            if isinstance(msg, P.Hello) and self.hello is None:
                self.hello = msg
                self.hello_event.set()
                self.last_frame = time.monotonic()
            else:
                self._put(Event("message", msg, request_id))
        text = self._exit_text() + cut
        self._log_thread.join(timeout=1.0)  # the last log lines usually tell why it ended
        self._put(Event("exit", error=text))
        self.hello_event.set()  # wake anyone waiting for a handshake that will never come

    def _exit_text(self) -> str:
        try:
            code = self.proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            return "the backend closed its output"
        return f"the backend exited with code {code}"

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        for raw in iter(self.proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._log_lock:
                self._log.append(line)
                self._log_count += 1

    def _put(self, event: Event) -> None:
        event.at = time.monotonic()
        self.last_frame = event.at
        self.events.put(event)

    # ---------------------------------------------------------------------------------------- main side

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_mark(self) -> int:
        """How many lines the backend has logged so far (``log_tail(since=...)`` starts there)."""
        with self._log_lock:
            return self._log_count

    def log_tail(self, lines: int = 40, since: int = 0) -> str:
        """The last ``lines`` lines the backend wrote to stderr, only those after mark ``since``."""
        with self._log_lock:
            kept, first = list(self._log), self._log_count - len(self._log)
        return "\n".join(kept[max(0, since - first):][-lines:])

    def new_request_id(self) -> int:
        with self._id_lock:
            self._next_id += 1
            return self._next_id

    def send(self, msg: P.Message, request_id: int = 0) -> None:
        """Send one frame; raises ``BackendUnavailable`` if the pipe is gone."""
        try:
            self._writer.send(msg, request_id)
        except (BrokenPipeError, OSError, ValueError) as exc:
            raise BackendUnavailable(f"The backend stopped accepting requests ({exc}).",
                                     log=self.log_tail()) from None

    def wait_hello(self, timeout: float) -> P.Hello:
        """Block until the handshake arrived; raise ``BackendUnavailable`` if it does not."""
        self.hello_event.wait(timeout)
        if self.hello is not None:
            self._check_version(self.hello)
            return self.hello
        time.sleep(0.2)  # let the log thread catch the last lines of a crash
        if self.alive():
            self.kill()
            if self.garbled:
                raise BackendUnavailable(f"The backend wrote garbled data instead of its handshake ({self.garbled}).",
                                         hint="The Backend Python must run this add-on's backend, and nothing "
                                              "else may print to its standard output; see the log.",
                                         log=self.log_tail())
            raise BackendUnavailable(f"The backend did not answer within {timeout:.0f} s.",
                                     hint="Check the Backend Python preference; see the log.",
                                     log=self.log_tail())
        raise BackendUnavailable(f"The backend failed to start (exit code {self.proc.returncode}).",
                                 hint=_start_hint(self.log_tail()), log=self.log_tail())

    def _check_version(self, hello: P.Hello) -> None:
        if hello.protocol != P.PROTOCOL_VERSION:
            raise BackendUnavailable(
                f"The backend speaks protocol {hello.protocol}, the add-on {P.PROTOCOL_VERSION}.",
                hint="Install the backend and the add-on from the same release.")

    def ping(self, timeout: float = 5.0) -> P.Pong:
        """Round-trip a Ping outside of any request (used by 'Check backend')."""
        request_id = self.new_request_id()
        self.send(P.Ping(), request_id)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                break
            if isinstance(event.message, P.Pong) and event.request_id == request_id:
                return event.message
            if event.kind == "exit":
                raise BackendUnavailable(f"The backend went away: {event.error}.", log=self.log_tail())
            if event.kind == "protocol_error":
                self.kill()
                raise BackendUnavailable(f"Garbled data from the backend: {event.error}.",
                                         hint="It was stopped; make sure add-on and backend versions match.",
                                         log=self.log_tail())
        raise BackendUnavailable(f"No answer to a ping within {timeout:.0f} s.", log=self.log_tail())

    def drain(self) -> None:
        """Drop messages left over from earlier requests (an end of stream or a garbled frame stays)."""
        kept: list[Event] = []
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                break
            if event.kind in ("exit", "protocol_error"):
                kept.append(event)
        for event in kept:
            self.events.put(event)

    def stop(self, grace: float = 2.0) -> None:
        """Ask the backend to exit (Shutdown, then closing its stdin); kill it if it does not."""
        if self.alive():
            with contextlib.suppress(OSError, ValueError):
                self._writer.send(P.Shutdown())
        self._close_stdin()
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """End the process at once and reap it."""
        if self.alive():
            self.proc.kill()
        self._close_stdin()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5.0)

    def _close_stdin(self) -> None:
        stdin = self.proc.stdin
        if stdin is not None and not stdin.closed:
            with contextlib.suppress(OSError):
                stdin.close()


def _start_hint(log: str) -> str:
    if "No module named 'backend'" in log:
        return "The backend package is not found: reinstall the add-on, or set the backend folder."
    if "No module named" in log:
        return "The backend Python lacks a package; install the backend's requirements into it (see README)."
    return "See the log below; check the Backend Python preference."


class BackendManager:
    """The one backend of this Blender session: started on demand, restarted when it died."""

    def __init__(self) -> None:
        self.process: BackendProcess | None = None

    def get(self, config: BackendConfig, wait: bool = True) -> BackendProcess:
        """A live backend for ``config`` (started or restarted as needed); ``wait``: handshake done."""
        proc = self.process
        if proc is not None and (not proc.alive() or proc.config != config):
            self.stop()
            proc = None
        if proc is None:
            proc = self.process = BackendProcess(config)
        if not wait:
            return proc
        try:
            proc.wait_hello(config.hello_timeout)
        except BackendUnavailable:
            self.process = None
            proc.kill()
            raise
        return proc

    def running(self) -> BackendProcess | None:
        """The backend if one is alive, without starting anything."""
        proc = self.process
        return proc if proc is not None and proc.alive() else None

    def stop(self) -> None:
        """Stop the backend (if any)."""
        proc, self.process = self.process, None
        if proc is not None:
            proc.stop()

    def kill(self) -> None:
        proc, self.process = self.process, None
        if proc is not None:
            proc.kill()


def describe_hello(hello: P.Hello) -> list[str]:
    """Short human-readable lines about a handshake (for the preferences and the panel)."""
    lines = [f"Backend {hello.backend_version or '?'} (Python {hello.python_version or '?'}, "
             f"torch {hello.torch_version or 'not installed'}), devices: {', '.join(hello.devices) or '-'}"]
    for engine in hello.engines:
        lines.append(f"{engine.get('label') or engine.get('name')}: {engine_state(engine)}")
    return lines


def engine_state(engine: dict[str, Any]) -> str:
    """'ready', or what is missing."""
    if engine.get("available"):
        return "ready"
    missing = engine.get("missing") or []
    return "missing " + ", ".join(str(m) for m in missing) if missing else "not available"
