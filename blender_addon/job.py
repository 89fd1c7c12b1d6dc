"""One generation request from the client's side (no bpy): send it, follow the reply stream, assemble meshes.

``Job.pump`` takes what has arrived without blocking (Blender's timer calls it); ``Job.wait`` blocks until
the end (background mode, scripts, tests). Either way nothing touches the scene: the job ends with a
``JobResult`` holding validated arrays, or a ``JobFailed`` that says what went wrong and what to do.
"""

from __future__ import annotations

import contextlib
import queue
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .client import BackendProcess, BackendUnavailable, Event
from .settings import GenerateSettings, declared_params, engine_params
from .wire import protocol as P

PING_SECONDS = 2.0
CANCEL_GRACE_SECONDS = 5.0
CODE_HINTS = {
    "busy": "The backend is still working on earlier requests: wait for them to finish, or cancel them.",
    "bad_input": "Check the image and the parameters.",
    "cancelled": "Start it again when ready.",
}
"What to do, for backend errors that arrive without a hint of their own."


class JobFailed(Exception):
    """The request ended without a result. ``code`` follows the backend's error codes."""

    def __init__(self, code: str, message: str, hint: str = "", traceback: str = "", log: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint
        self.traceback = traceback
        self.log = log

    def user_text(self) -> str:
        """One line for a report: the message and the hint."""
        return f"{self.message} {self.hint}".strip()


@dataclass
class ReceivedMesh:
    name: str
    arrays: dict[str, np.ndarray]
    "vertices [V, 3] float32, faces [F, 3] int32, optional normals [V, 3] and uvs [V, 2]."
    textures: dict[str, np.ndarray] = field(default_factory=dict)
    "Images the UVs index, by role: 'normal' (tangent space, uint16 RGBA), 'base_color' (sRGB, uint8 RGBA)."


@dataclass
class JobResult:
    meshes: list[ReceivedMesh]
    normal_map: np.ndarray | None
    "uint16 [H, W, 4], top row first: the predicted map in camera space (colours (n + 1) / 2, alpha = mask)."
    seconds: float
    stats: dict[str, Any] = field(default_factory=dict)

    def mask_report(self) -> dict[str, Any]:
        """Where the mask came from (``source``, ``coverage``, ``confidence``, ``warning``), as the backend
        reported it in ``Done.stats["mask"]``; only well-typed plain values are kept ({} when absent)."""
        report = self.stats.get("mask")
        if not isinstance(report, dict):
            return {}
        texts = {k: report[k] for k in ("source", "warning") if isinstance(report.get(k), str)}
        numbers = {k: float(report[k]) for k in ("coverage", "confidence")
                   if isinstance(report.get(k), (int, float)) and not isinstance(report.get(k), bool)}
        return {**texts, **numbers}

    def mask_warning(self) -> str:
        """The backend's warning about the mask ('' when the mask looked right)."""
        return str(self.mask_report().get("warning", ""))


class Job:
    """A request in flight on ``backend``; ``state`` is running, cancelling, done or failed."""

    def __init__(self, backend: BackendProcess, settings: GenerateSettings,
                 hang_timeout: float = 15.0) -> None:
        self.backend = backend
        self.settings = settings
        self.hang_timeout = hang_timeout
        self.request_id = 0
        self.state = "new"
        self.stage = "starting"
        self.step = 0
        self.total = 0
        self.message = ""
        self.result: JobResult | None = None
        self.failure: JobFailed | None = None
        self._normal_map: np.ndarray | None = None
        self._meshes: dict[int, P.MeshAssembly] = {}
        self._textures: dict[int, dict[str, np.ndarray]] = {}
        self._last_ping = time.monotonic()
        self._started = time.monotonic()
        self._cancel_at = 0.0
        self._log_mark = 0

    # ---------------------------------------------------------------------------------------- control

    def start(self) -> None:
        """Send the request (the backend's handshake must have arrived)."""
        self.backend.drain()
        self._log_mark = self.backend.log_mark()
        self.request_id = self.backend.new_request_id()
        self.state = "running"
        self._last_ping = self._started = time.monotonic()
        try:
            message = self._request_message()
        except (ValueError, TypeError, OverflowError) as exc:  # a seed or value no frame can carry
            self._fail(JobFailed("bad_input", f"The request cannot be sent: {exc}.",
                                 "Check the seed and the parameters."))
            return
        try:
            self.backend.send(message, self.request_id)
        except BackendUnavailable as exc:
            self._fail(JobFailed("backend_died", exc.message, exc.hint, log=exc.log))
        except P.ProtocolError as exc:  # nothing was written: the backend is fine
            self._fail(JobFailed("bad_input", f"The request cannot be sent: {exc}.",
                                 "Use a smaller image file (re-save it as PNG or JPEG)."))

    def _request_message(self) -> P.Generate:
        s = self.settings
        params = dict(s.params)
        hello = self.backend.hello
        engine = next((e for e in (hello.engines if hello else []) if e.get("name") == s.engine), None)
        if not s.strict_params:
            params = engine_params(engine, params)
        params = {**declared_params(engine, s.optional_params), **params}
        image = np.frombuffer(s.image_bytes, dtype=np.uint8) if s.image_bytes is not None else None
        return P.Generate(engine=s.engine, seed=int(s.seed), params=params, image_path=s.image_path,
                          image_name=s.image_name, device=s.device, want_normal_map=s.want_normal_map,
                          want_textures=s.want_textures,
                          want_edges=not self.backend.config.prefix,  # a remote link: Blender computes them
                          image_bytes=image,
                          mask_bytes=np.frombuffer(s.mask_bytes, dtype=np.uint8) if s.mask_bytes else None,
                          **_view_fields(s))

    def cancel(self) -> None:
        """Ask the backend to stop; the job fails with code 'cancelled' once it confirms (or is killed)."""
        if self.state == "new":
            self._fail(JobFailed("cancelled", "Generation cancelled."))
            return
        if self.state != "running":
            return
        self.state = "cancelling"
        self.stage, self.message = "cancelling", "Cancelling..."
        self._cancel_at = time.monotonic()
        try:
            self.backend.send(P.Cancel(), self.request_id)
        except BackendUnavailable:
            self._fail(JobFailed("cancelled", "Generation cancelled."))

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed")

    @property
    def fraction(self) -> float:
        """Progress of the current stage, 0..1 (0 when the stage has no known length)."""
        return min(1.0, self.step / self.total) if self.total > 0 else 0.0

    def status_text(self) -> str:
        """Stage and step for the progress bar."""
        text = self.stage.replace("_", " ").capitalize()
        if self.total > 0:
            text += f" {min(self.step, self.total)}/{self.total}"
        return f"{text}: {self.message}" if self.message else text

    # ---------------------------------------------------------------------------------------- driving

    def pump(self, budget: float = 0.05) -> bool:
        """Handle what has arrived, for at most ``budget`` seconds; True once the job is finished."""
        if self.state == "new":
            self._handshake(block=False)
        deadline = time.monotonic() + budget
        while not self.finished and time.monotonic() < deadline:
            try:
                event = self.backend.events.get_nowait()
            except queue.Empty:
                break
            self.feed(event)
        self.check(time.monotonic())
        return self.finished

    def wait(self, timeout: float | None = None) -> JobResult:
        """Block until the job ends; return its result or raise its ``JobFailed``."""
        end = None if timeout is None else time.monotonic() + timeout
        if self.state == "new":
            self._handshake(block=True)
        while not self.finished:
            with contextlib.suppress(queue.Empty):
                self.feed(self.backend.events.get(timeout=0.25))
            self.check(time.monotonic())
            if end is not None and time.monotonic() > end and not self.finished:
                self.cancel()
                end = None
        if self.failure is not None:
            raise self.failure
        assert self.result is not None
        return self.result

    def _handshake(self, block: bool) -> None:
        """Send the request once the backend's Hello is in (waiting for it if ``block``)."""
        timeout = self.backend.config.hello_timeout
        waited = time.monotonic() - self._started
        if not block and not self.backend.hello_event.is_set():
            if waited > timeout:
                self._await_hello(0.0)
            return
        self._await_hello(max(0.0, timeout - waited) if block else 0.0)
        if self.state == "new":
            self.start()

    def _await_hello(self, timeout: float) -> None:
        try:
            self.backend.wait_hello(timeout)
        except BackendUnavailable as exc:
            self.backend.kill()  # a silent or mismatched backend is of no use to the next run either
            self._fail(JobFailed("backend_unavailable", exc.message, exc.hint, log=exc.log))

    def check(self, now: float) -> None:
        """Pings while busy, hang detection, and the cancel deadline."""
        if self.finished or self.state == "new":
            return
        if self.state == "cancelling" and now - self._cancel_at > CANCEL_GRACE_SECONDS:
            self.backend.kill()
            self._fail(JobFailed("cancelled", "Generation cancelled (the backend was stopped)."))
            return
        if now - max(self.backend.last_frame, self._started) > self.hang_timeout:
            log = self._log()
            self.backend.kill()
            self._fail(JobFailed("hung", f"The backend stopped responding for {self.hang_timeout:.0f} s.",
                                 "It was stopped; try again (raise the hang timeout in the preferences if a "
                                 "slow machine needs it).", log=log))
            return
        if now - self._last_ping > PING_SECONDS:
            self._last_ping = now
            with contextlib.suppress(BackendUnavailable):  # the reader thread reports the exit
                self.backend.send(P.Ping(), self.request_id)

    # ---------------------------------------------------------------------------------------- events

    def feed(self, event: Event) -> None:
        """Update the job from one event of the reader thread."""
        if self.finished:
            return
        if event.kind == "exit":
            self.backend.kill()  # its output is gone: make sure the process is too, so the next run restarts it
            if self.state == "cancelling":  # Stop Backend during a run
                self._fail(JobFailed("cancelled", "Generation cancelled (the backend was stopped)."))
            else:
                self._fail(JobFailed("backend_died", f"The backend stopped unexpectedly ({event.error}).",
                                     "It restarts with the next generation; see the log for the cause.",
                                     log=self._log()))
        elif event.kind == "protocol_error":
            self.backend.kill()
            self._fail(JobFailed("protocol", f"Garbled data from the backend: {event.error}.",
                                 "The backend was restarted; make sure add-on and backend versions match.",
                                 log=self._log()))
        elif event.message is not None and event.request_id in (self.request_id, 0):
            try:
                self._on_message(event.message)
            except P.ProtocolError as exc:
                self.backend.kill()
                self._fail(JobFailed("protocol", f"The backend sent an invalid mesh: {exc}.",
                                     "The backend was restarted; try again.", log=self._log()))
            except (MemoryError, ValueError, KeyError, TypeError) as exc:  # never leave the job running
                self.backend.kill()
                self._fail(JobFailed("protocol", f"Could not take in the backend's reply "
                                     f"({type(exc).__name__}: {exc}).",
                                     "The backend was restarted; try again (a smaller mesh needs less memory).",
                                     log=self._log()))

    def _on_message(self, msg: P.Message) -> None:
        if isinstance(msg, P.Progress):
            if self.state != "cancelling":  # the panel says Cancelling... until the backend confirms
                self.stage, self.step, self.total, self.message = msg.stage, msg.step, msg.total, msg.message
        elif isinstance(msg, P.NormalMap):
            self._normal_map = _normal_pixels(msg)
        elif isinstance(msg, P.MeshTexture):
            if msg.mesh_index not in self._meshes:
                raise P.ProtocolError(f"texture for unknown mesh {msg.mesh_index}")
            self._textures.setdefault(msg.mesh_index, {})[msg.role] = _texture_pixels(msg)
        elif isinstance(msg, P.MeshStart):
            self._meshes[msg.mesh_index] = P.MeshAssembly(msg)
            if self.state != "cancelling":
                self.stage, self.step, self.total, self.message = "receiving", 0, 0, msg.name
        elif isinstance(msg, P.MeshChunk):
            assembly = self._meshes.get(msg.mesh_index)
            if assembly is None:
                raise P.ProtocolError(f"chunk for unknown mesh {msg.mesh_index}")
            assembly.add(msg)
        elif isinstance(msg, P.Done):
            self._on_done(msg)
        elif isinstance(msg, P.Error):
            code = "cancelled" if self.state == "cancelling" else msg.code
            hint = msg.hint or CODE_HINTS.get(code, "")
            self._fail(JobFailed(code, msg.message or f"The backend refused the request ({code}).", hint,
                                 msg.traceback, self._log()))

    def _on_done(self, msg: P.Done) -> None:
        if self.state == "cancelling":
            self._fail(JobFailed("cancelled", "Generation cancelled."))
            return
        if msg.mesh_count != len(self._meshes):
            raise P.ProtocolError(f"Done says {msg.mesh_count} meshes, {len(self._meshes)} arrived")
        meshes = [ReceivedMesh(a.start.name, a.finish(), self._textures.get(i, {}))
                  for i, a in sorted(self._meshes.items())]
        self.result = JobResult(meshes, self._normal_map, msg.seconds, dict(msg.stats))
        self.state, self.stage, self.message = "done", "done", ""

    def abort(self, exc: BaseException) -> None:
        """An unexpected error while following the job: end the backend and fail (never stay 'running')."""
        self.backend.kill()
        self._fail(JobFailed("internal", f"The add-on hit an unexpected error ({type(exc).__name__}: {exc}).",
                             "The backend was restarted; try again, and report this with the system console "
                             "output if it repeats.", log=self._log()))

    def _log(self) -> str:
        """The backend's log since this request was sent (earlier requests' lines are not its story)."""
        return self.backend.log_tail(since=self._log_mark)

    def _fail(self, failure: JobFailed) -> None:
        self.failure = failure
        self.state = "failed"
        self.stage, self.message = "failed", failure.message
        self._meshes.clear()
        self._textures.clear()


def _normal_pixels(msg: P.NormalMap) -> np.ndarray:
    pixels = msg.pixels
    if pixels is None or pixels.dtype != np.uint16 or pixels.ndim != 3 or pixels.shape[2] != 4:
        raise P.ProtocolError("normal map must be uint16 [H, W, 4]")
    if pixels.shape[:2] != (msg.height, msg.width):
        raise P.ProtocolError("normal map size does not match its header")
    return pixels


TEXTURE_DTYPES = {"normal": np.uint16, "base_color": np.uint8}
"The pixel type of each ``MeshTexture`` role."


def _texture_pixels(msg: P.MeshTexture) -> np.ndarray:
    dtype = TEXTURE_DTYPES.get(msg.role)
    if dtype is None:
        raise P.ProtocolError(f"unknown texture role {msg.role!r}")
    pixels = msg.pixels
    if pixels is None or pixels.dtype != dtype or pixels.ndim != 3 or pixels.shape[2] != 4:
        raise P.ProtocolError(f"{msg.role} texture must be {np.dtype(dtype).name} [H, W, 4]")
    if pixels.shape[:2] != (msg.height, msg.width) or not pixels.size:
        raise P.ProtocolError(f"{msg.role} texture size does not match its header")
    return pixels


def _view_fields(s: GenerateSettings) -> dict[str, Any]:
    """The multi-view fields of ``Generate`` (none for one picture, so older backends still understand it)."""
    if not s.view_bytes:
        return {}
    return {"view_bytes": np.frombuffer(b"".join(s.view_bytes), dtype=np.uint8),
            "view_sizes": [len(b) for b in s.view_bytes], "view_angles": [float(a) for a in s.view_angles]}
