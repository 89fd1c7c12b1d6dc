"""The long-lived backend process: reads requests from stdin, streams replies on stdout.

One worker (the main thread) runs requests one at a time, so models load once and stay loaded; a reader
thread decodes incoming frames, answers Ping at once and turns Cancel into an event the worker checks
between steps. stdout carries frames only: anything else printing to fd 1 is redirected to stderr.

Requests waiting behind the running one are bounded (``MAX_WAITING``, ``MAX_WAITING_BYTES``; more are
refused as ``busy``). A Cancel reaches only a request already running or waiting. Shutdown and the end of
input cancel the running request and drop the waiting ones; a worker stuck without a cancel point gets
``EXIT_GRACE_SECONDS`` before the process exits anyway.
"""

from __future__ import annotations

import gc
import os
import platform
import queue
import re
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

from . import __version__
from . import protocol as P
from .engines import make_engines
from .engines.base import Engine, EngineRequest, EngineResult, MeshData, check_seed, validate_params
from .errors import BackendError, BadInput, OutOfMemory
from .faults import Faults
from .images import apply_mask, decode_image, load_image
from .jobs import JobContext
from .mesh.edges import mesh_edges, warm_compiled
from .normalmap import to_rgba16
from .settings import BackendSettings

MAX_NORMAL_MAP_SIDE = 2048
MAX_WAITING = 8
"Requests (beyond the running one) that may wait; more are refused with code 'busy'."
MAX_WAITING_BYTES = 160 << 20
"Frame bytes that may wait (two requests of the largest frame size); more are refused with code 'busy'."
EXIT_GRACE_SECONDS = 5.0
"After Shutdown or end of input: how long a worker stuck without a cancel point may take before the process exits."
MAX_PATH_CHARS = 4096
DEVICE_PATTERN = re.compile(r"(auto|cpu|mps|cuda(:[0-9]{1,3})?)")


@dataclass(eq=False)  # compared by identity: two requests may carry equal fields
class _Request:
    """A request taken from the stream: waiting, then running; ``cancel`` is set by Cancel or Shutdown."""

    msg: P.Message
    request_id: int
    nbytes: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)
    dropped: bool = False
    "Cancelled by Shutdown before it ran: answered, never run."
    last_progress: float = field(default_factory=time.monotonic)


class Server:
    """Serves one client over a pair of binary streams until Shutdown or end of input.

    ``exit_grace``: seconds after Shutdown or end of input after which the process ends itself even if
    the worker is stuck (None: never, for in-process use).
    """

    def __init__(self, inp: BinaryIO, out: BinaryIO, settings: BackendSettings,
                 engines: dict[str, Engine] | None = None, exit_grace: float | None = None) -> None:
        self.reader = P.FrameReader(inp)
        self.writer = P.FrameWriter(out)
        self.raw_out = out
        self.settings = settings
        self.faults = Faults.parse(settings.fault)
        self.engines = engines if engines is not None else make_engines(settings)
        self.exit_grace = exit_grace
        self.inbox: queue.Queue[_Request | None] = queue.Queue()
        self.current: _Request | None = None
        self.waiting: list[_Request] = []
        "Requests in the inbox, oldest first (guarded by ``_lock``)."
        self.stopping = False
        self._lock = threading.Lock()
        self._served = threading.Event()
        self._edges_warmed = False

    # ------------------------------------------------------------------------------------ main loop

    def serve(self) -> int:
        """Handshake, then run requests until Shutdown or EOF. Returns the exit code."""
        try:
            self.faults.fire("start", self.raw_out)
            self.writer.send(self.hello())
            threading.Thread(target=self._read_loop, name="frame-reader", daemon=True).start()
            while (item := self.inbox.get()) is not None:
                self._take(item)
                try:
                    self._run(item)
                finally:
                    self.current = None
            return 0
        finally:
            self._served.set()

    def _take(self, item: _Request) -> None:
        with self._lock:
            self.waiting.remove(item)
            self.current = item

    def _run(self, item: _Request) -> None:
        if item.dropped:
            if isinstance(item.msg, P.Generate):
                self._send_error(item.request_id, "cancelled", "Dropped: the backend is shutting down.",
                                 "Start the backend again and resend the request.")
        elif isinstance(item.msg, P.ReleaseModels):
            self.release_models()
        elif isinstance(item.msg, P.Generate):  # Normals is a Generate too
            self.run_request(item)

    def hello(self) -> P.Hello:
        torch_version, devices = _torch_info()
        return P.Hello(backend_version=__version__, python_version=platform.python_version(),
                       torch_version=torch_version, devices=devices, pid=os.getpid(),
                       engines=[_describe(e) for e in self.engines.values()])

    def release_models(self) -> None:
        for engine in self.engines.values():
            engine.release()
        gc.collect()

    # ------------------------------------------------------------------------------------ reader thread

    def _read_loop(self) -> None:
        while True:
            try:
                item = self.reader.read()
            except P.ProtocolError as exc:
                if not self._on_bad_frame(exc):
                    break
                continue
            except (OSError, ValueError):
                break
            if item is None:
                break
            self._dispatch(*item)
        self._stop()

    def _dispatch(self, msg: P.Message, request_id: int) -> None:
        if isinstance(msg, P.Ping):
            current = self.current
            since = time.monotonic() - current.last_progress if current else 0.0
            self.writer.send(P.Pong(busy=current is not None, seconds_since_progress=since), request_id)
        elif isinstance(msg, P.Cancel):
            self._cancel(request_id)
        elif isinstance(msg, P.Shutdown):
            self._stop()
        elif isinstance(msg, (P.Generate, P.ReleaseModels)):
            self._enqueue(_Request(msg, request_id, self.reader.last_size))
        else:
            self._send_error(request_id, "protocol", f"{type(msg).__name__} is not a request.",
                             "Send Generate, Normals, Cancel, Ping, ReleaseModels or Shutdown.")

    def _cancel(self, request_id: int) -> None:
        """Cancel the running or waiting request(s) with this id; an id not seen (yet) is ignored."""
        with self._lock:
            for item in (self.current, *self.waiting):
                if item is not None and item.request_id == request_id:
                    item.cancel.set()

    def _enqueue(self, item: _Request) -> None:
        with self._lock:
            refusal = self._refusal(item)
            if not refusal:
                self.waiting.append(item)
                self.inbox.put(item)
        if refusal:
            self._send_error(item.request_id, *refusal)

    def _refusal(self, item: _Request) -> tuple[str, str, str] | None:
        """Why ``item`` cannot wait, as (code, message, hint); None when it can. Holds ``_lock``."""
        if self.stopping:
            return ("cancelled", "Refused: the backend is shutting down.", "Start the backend again.")
        queued = sum(w.nbytes for w in self.waiting)
        if len(self.waiting) >= MAX_WAITING or queued + item.nbytes > MAX_WAITING_BYTES:
            return ("busy", f"The backend is busy: {len(self.waiting)} request(s) ({queued >> 20} MiB) are "
                            "waiting already.", "Wait for the running generation to finish, or cancel it.")
        return None

    def _stop(self) -> None:
        """Shutdown or end of input: cancel the running request, drop the waiting ones, then end."""
        with self._lock:
            if self.stopping:
                return
            self.stopping = True
            for item in (self.current, *self.waiting):
                if item is not None:
                    item.cancel.set()
                    item.dropped = item is not self.current
            self.inbox.put(None)
        if self.exit_grace is not None:
            threading.Thread(target=self._exit_if_stuck, args=(self.exit_grace,), name="exit-watchdog",
                             daemon=True).start()

    def _exit_if_stuck(self, grace: float) -> None:
        if self._served.wait(grace):
            return
        print(f"[hi3dgen] the running request did not stop within {grace:.0f} s of the end of the session; "
              "exiting anyway", file=sys.stderr, flush=True)
        os._exit(0)

    def _on_bad_frame(self, exc: P.ProtocolError) -> bool:
        """Report a bad frame; return False when the input cannot be read any further."""
        hint = ("Check the request's field types." if exc.code == "bad_input"
                else "The add-on and backend versions may differ; update or restart both.")
        self._send_error(exc.request_id, exc.code, f"Bad frame from the client: {exc}", hint)
        if exc.code == "truncated":
            return False
        if exc.skip is None:
            return self.reader.resync()
        return True

    # ------------------------------------------------------------------------------------ one request

    def run_request(self, item: _Request) -> None:
        """Run one request; its last frame (Done or Error) goes out once the backend is idle again."""
        final = self._outcome(item)
        with self._lock:  # a Ping answered after the last frame must not see this request as running
            if self.current is item:
                self.current = None
        self.writer.send(final, item.request_id)

    def _outcome(self, item: _Request) -> P.Done | P.Error:
        msg, request_id = item.msg, item.request_id
        assert isinstance(msg, P.Generate)
        started = time.perf_counter()
        try:
            ctx = JobContext(report=self._reporter(item), cancel_event=item.cancel)
            ctx.check()
            engine, request = self._request(msg)
            self._warm_edges(msg)
            result = engine.normals(request, ctx) if isinstance(msg, P.Normals) else engine.generate(request, ctx)
            self._send_result(result, request_id, ctx, msg)
            return P.Done(mesh_count=len(result.meshes), seconds=time.perf_counter() - started,
                          stats=_jsonable(result.stats))
        except BackendError as exc:
            return self._error(exc.code, exc.message, exc.hint)
        except MemoryError:
            return self._out_of_memory()
        except Exception as exc:  # report, keep serving: one bad request must not end the session
            if _is_oom(exc):
                return self._out_of_memory()
            return self._error("internal", f"Unexpected error: {exc}",
                               "Please report it with the log shown in the add-on.", traceback.format_exc())

    def _reporter(self, current: _Request):  # noqa: ANN202 - a ProgressFn
        def report(stage: str, step: int, total: int, message: str) -> None:
            current.last_progress = time.monotonic()
            self.faults.fire(stage, self.raw_out)
            self.writer.send(P.Progress(stage=stage, step=step, total=total, message=message), current.request_id)
        return report

    def _request(self, msg: P.Generate) -> tuple[Engine, EngineRequest]:
        engine = self.engines.get(msg.engine)
        if engine is None:
            raise BadInput(f"Unknown engine {msg.engine[:60]!r}.", hint=f"Use one of: {', '.join(self.engines)}.",
                           code="unknown_engine")
        params = validate_params(engine.params, msg.params)
        seed = check_seed(msg.seed)
        device = _device(msg.device) or self.settings.device
        image = _image(msg.image_bytes, msg.image_path, msg.image_name)
        if image is None:
            raise BadInput("The request carries no image.", hint="Send image bytes or an image path.")
        mask = _image(msg.mask_bytes, msg.mask_path, "mask", "mask")
        if mask is not None:
            image = apply_mask(image, mask)
        normal_map = _image(msg.normal_bytes, msg.normal_path, "normal map", "normal map")
        views, angles = _views(msg)
        return engine, EngineRequest(image, _safe_name(msg.image_name), seed, params, device, normal_map,
                                     views=views, view_angles=angles)

    def _send_result(self, result: EngineResult, request_id: int, ctx: JobContext, msg: P.Generate) -> None:
        if msg.want_normal_map and result.normal_map is not None:
            nm = result.normal_map
            pixels = _limit_side(to_rgba16(nm.normals, nm.mask), MAX_NORMAL_MAP_SIDE)
            self.writer.send(P.NormalMap(width=pixels.shape[1], height=pixels.shape[0], pixels=pixels), request_id)
        for index, mesh in enumerate(result.meshes):
            arrays = {"vertices": mesh.vertices, "faces": mesh.faces, "normals": mesh.normals, "uvs": mesh.uvs}
            if msg.want_edges:  # Blender's part, done here (backend/mesh/edges.py)
                arrays["corner_edge"] = mesh_edges(mesh.faces, len(mesh.vertices))[1]
            for n, frame in enumerate(P.mesh_frames(index, mesh.name, arrays)):
                if n == 2:
                    self.faults.fire("mesh", self.raw_out)
                ctx.check()
                self.writer.send(frame, request_id)
            if msg.want_textures and mesh.uvs is not None:
                ctx.check()
                for texture in texture_frames(index, mesh, result):
                    self.writer.send(texture, request_id)

    def _warm_edges(self, msg: P.Generate) -> None:
        """Load the compiled edge pass while the first generation runs (compile it, once after an install:
        a few seconds), so its mesh does not wait for it (``edges.warm_compiled``)."""
        if msg.want_edges and not self._edges_warmed and not isinstance(msg, P.Normals):
            self._edges_warmed = True
            threading.Thread(target=warm_compiled, name="edges-warm-up", daemon=True).start()

    def _send_error(self, request_id: int, code: str, message: str, hint: str = "", tb: str = "") -> None:
        self.writer.send(self._error(code, message, hint, tb), request_id)

    @staticmethod
    def _error(code: str, message: str, hint: str = "", tb: str = "") -> P.Error:
        """An Error frame, logged to stderr as it is made."""
        print(f"[hi3dgen] error {code}: {message}\n{tb}", file=sys.stderr, flush=True)
        return P.Error(code=code, message=message, hint=hint, traceback=tb)

    def _out_of_memory(self) -> P.Error:
        self.release_models()
        _empty_device_cache()
        exc = OutOfMemory("Ran out of memory.", hint="Lower the resolution or steps, close other programs, "
                                                     "or choose the CPU device (more memory, slower).")
        return self._error(exc.code, exc.message, exc.hint)


# ---------------------------------------------------------------------------------------- helpers


def texture_frames(index: int, mesh: MeshData, result: EngineResult) -> list[P.MeshTexture]:
    """The ``MeshTexture`` frames of one UV-mapped mesh: its tangent-space normal texture and base colour,
    made as the mesh files make them (``result_textures``: the texture is for the mesh shaded smooth with
    edges over 30 degrees and the textured faces' border sharp, the add-on's Auto Smooth)."""
    from .mesh.shading import shaded_mesh
    from .result_textures import mesh_images

    images = mesh_images(shaded_mesh(mesh.vertices, mesh.faces, mesh.normals, mesh.uvs), result, mesh.baked)
    if images is None:
        return []
    planes: list[tuple[str, np.ndarray]] = []
    if images.normals is not None and images.mask is not None:
        planes.append(("normal", to_rgba16(images.normals, images.mask)))
    if images.base_color is not None:
        planes.append(("base_color", images.base_color))
    frames = []
    for role, pixels in planes:
        pixels = _limit_side(pixels, MAX_NORMAL_MAP_SIDE)
        frames.append(P.MeshTexture(mesh_index=index, role=role, width=pixels.shape[1], height=pixels.shape[0],
                                    pixels=pixels))
    return frames


def _image(data: np.ndarray | None, path: str, name: str, what: str = "image"):  # noqa: ANN202 - LoadedImage | None
    if data is not None:
        return decode_image(data.tobytes(), name[:100])
    if path:
        if "\0" in path or len(path) > MAX_PATH_CHARS:
            raise BadInput(f"The {what} path is not a usable file path ({len(path)} characters"
                           f"{', with a NUL byte' if chr(0) in path else ''}).", hint="Choose the file again.")
        return load_image(path)
    return None


def _views(msg: P.Generate):  # noqa: ANN202 - (tuple[LoadedImage, ...], tuple[float, ...])
    """The extra views' images (each path checked as the main image's) and the view angles."""
    from .engines.multiview import MAX_VIEWS, check_views

    if len(msg.view_paths) > MAX_VIEWS or not all(isinstance(p, str) and p for p in msg.view_paths):
        raise BadInput(f"view_paths must be at most {MAX_VIEWS} non-empty paths.", hint="Pass fewer views.")
    if not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in msg.view_angles):
        raise BadInput("view_angles must be numbers (degrees).", hint="Send one number per view.")
    views = tuple(_image(None, path, f"view {n}", f"view {n}") for n, path in enumerate(msg.view_paths, 2))
    views += _view_blobs(msg, first=2 + len(views))
    angles = tuple(float(a) for a in msg.view_angles)
    check_views(1 + len(views), angles)
    return views, angles


def _view_blobs(msg: P.Generate, first: int):  # noqa: ANN202 - tuple[LoadedImage, ...]
    """The views sent as bytes: ``view_bytes`` cut at ``view_sizes`` (which must add up to its length)."""
    from .engines.multiview import MAX_VIEWS

    sizes, data = msg.view_sizes, msg.view_bytes
    total = 0 if data is None else len(data)
    if (len(sizes) > MAX_VIEWS or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in sizes)
            or sum(sizes) != total):
        raise BadInput(f"view_sizes ({len(sizes)} sizes) do not split the {total} view bytes.",
                       hint="Send one positive byte length per view file.")
    out, start = [], 0
    for n, size in enumerate(sizes, first):
        out.append(decode_image(bytes(data[start:start + size]), f"view {n}"))
        start += size
    return tuple(out)


def _device(name: str) -> str:
    """The requested device ('' for auto), refused unless it is a device name."""
    name = name.strip().lower()
    if not DEVICE_PATTERN.fullmatch(name):
        raise BadInput(f"Unknown device {name[:40]!r}.", hint="Use auto, cpu, cuda, cuda:N or mps.")
    return "" if name == "auto" else name


def _safe_name(name: str) -> str:
    stem = os.path.splitext(os.path.basename(name or "image"))[0]
    return "".join(c if c.isalnum() or c in "-_. " else "_" for c in stem)[:63] or "image"


def _limit_side(pixels: np.ndarray, side: int) -> np.ndarray:
    h, w = pixels.shape[:2]
    step = -(-max(h, w) // side)
    return np.ascontiguousarray(pixels[::step, ::step]) if step > 1 else pixels


def _describe(engine: Engine) -> dict[str, Any]:
    from .engines.base import describe

    return describe(engine)


def _jsonable(stats: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in stats.items():
        if isinstance(value, (np.integer, np.floating)):
            value = value.item()
        if isinstance(value, (str, int, float, bool, list, dict)) or value is None:
            out[str(key)] = value
    return out


def _is_oom(exc: Exception) -> bool:
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def _torch_info() -> tuple[str, list[str]]:
    try:
        import torch

        from .devices import available_devices
    except ImportError:
        return "", ["cpu"]
    return str(torch.__version__), available_devices()


def _empty_device_cache() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def serve_stdio(settings: BackendSettings) -> int:
    """Serve over this process's stdin/stdout, keeping fd 1 for frames only."""
    frames_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=1 << 16)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints from libraries go to the log
    sys.stdout = sys.stderr
    frames_in = os.fdopen(os.dup(sys.stdin.fileno()), "rb", buffering=1 << 16)
    return Server(frames_in, frames_out, settings, exit_grace=EXIT_GRACE_SECONDS).serve()
