"""Shared fixtures of the backend tests: a real ``python -m backend serve`` subprocess and test images."""

from __future__ import annotations

import io
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend import protocol as P

REPO = Path(__file__).resolve().parents[2]
FENCE_ID = 9_999  # request id of the Ping that follows a Cancel


class BackendProcess:
    """A backend subprocess with a reader thread; ``expect`` waits for the next frame of a given type."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        full_env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "backend", "serve"], cwd=REPO, env=full_env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.writer = P.FrameWriter(self.proc.stdin)  # type: ignore[arg-type]
        self.frames: queue.Queue = queue.Queue()
        self.stderr: list[bytes] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()  # type: ignore[arg-type]

    def _read(self) -> None:
        reader = P.FrameReader(self.proc.stdout)  # type: ignore[arg-type]
        while True:
            try:
                item = reader.read()
            except P.ProtocolError as exc:
                self.frames.put(exc)
                return
            self.frames.put(item)
            if item is None:
                return

    def send(self, msg: P.Message, request_id: int = 0) -> None:
        self.writer.send(msg, request_id)

    def send_raw(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def next(self, timeout: float = 30.0) -> tuple[P.Message, int]:
        item = self.frames.get(timeout=timeout)
        if item is None or isinstance(item, Exception):
            raise AssertionError(f"backend stream ended: {item!r}; stderr: {b''.join(self.stderr)[-2000:]!r}")
        return item

    def expect(self, kind: type, timeout: float = 30.0) -> tuple[P.Message, int]:
        """Skip Progress frames; return the next frame, which must be of ``kind``."""
        while True:
            msg, rid = self.next(timeout)
            if isinstance(msg, P.Progress) and kind is not P.Progress:
                continue
            assert isinstance(msg, kind), f"expected {kind.__name__}, got {msg!r}"
            return msg, rid

    def collect(self, request_id: int, timeout: float = 60.0) -> dict:
        """Everything one request sends until Done or Error: progress, normal map, assembled meshes, textures."""
        out: dict = {"progress": [], "meshes": [], "normal_map": None, "textures": [], "done": None, "error": None}
        assembly: P.MeshAssembly | None = None
        while True:
            msg, rid = self.next(timeout)
            assert rid == request_id, f"frame for request {rid}, expected {request_id}: {msg!r}"
            if isinstance(msg, P.Progress):
                out["progress"].append(msg)
            elif isinstance(msg, P.NormalMap):
                out["normal_map"] = msg
            elif isinstance(msg, P.MeshTexture):
                out["textures"].append(msg)
            elif isinstance(msg, P.MeshStart):
                assembly = P.MeshAssembly(msg)
            elif isinstance(msg, P.MeshChunk):
                assert assembly is not None
                assembly.add(msg)
                if sum(assembly.filled.values()) == sum(assembly.rows(k) for k in assembly.start.checksums):
                    out["meshes"].append(assembly.finish())
            elif isinstance(msg, P.Done):
                out["done"] = msg
                return out
            elif isinstance(msg, P.Error):
                out["error"] = msg
                return out

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send(P.Shutdown())
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


@dataclass
class CancelTrace:
    """What one request sent around its cancel, split at the fence (the Pong answering the Ping sent right
    after the Cancel): the backend reads frames in order, so by the fence its cancel flag was set."""

    before: list[P.Progress] = field(default_factory=list)
    after: list[P.Progress] = field(default_factory=list)
    reply: P.Message | None = None
    request_id: int = 0


def cancel_with_fence(proc: BackendProcess, request_id: int, timeout: float = 120.0) -> CancelTrace:
    """Cancel ``request_id``, then Ping; read until both the Pong and the request's final reply are in."""
    proc.send(P.Cancel(), request_id)
    proc.send(P.Ping(), FENCE_ID)
    trace, fenced = CancelTrace(), False
    while not (fenced and trace.reply is not None):
        msg, rid = proc.next(timeout)
        if isinstance(msg, P.Pong) and rid == FENCE_ID:
            fenced = True
        elif isinstance(msg, P.Progress):
            (trace.after if fenced else trace.before).append(msg)
        else:
            trace.reply, trace.request_id = msg, rid
    return trace


def assert_stopped_at_next_step(trace: CancelTrace, request_id: int, seen: P.Progress) -> None:
    """The request ended 'cancelled' at the next step boundary after its cancel arrived: steps ran on in
    order from ``seen`` (the last step the test saw before cancelling), and after the fence at most the step
    already under way reported, so no step began once the cancel was in."""
    assert trace.request_id == request_id and isinstance(trace.reply, P.Error), trace.reply
    assert trace.reply.code == "cancelled", trace.reply
    frames = [seen, *trace.before, *trace.after]
    steps = [p.step for p in frames]
    assert {p.stage for p in frames} == {seen.stage}, "cancelled within the stage it was sent in"
    assert steps == list(range(seen.step, seen.step + len(steps))), f"steps in order: {steps}"
    assert len(trace.after) <= 1, f"steps reported after the cancel arrived: {[p.step for p in trace.after]}"
    assert steps[-1] < seen.total, "stopped before the stage's last step"


@pytest.fixture(scope="module")
def backend() -> Iterator[BackendProcess]:
    """One backend per test module (start-up imports torch, about 1.5 s)."""
    proc = BackendProcess()
    hello, _ = proc.expect(P.Hello)
    proc.hello = hello  # type: ignore[attr-defined]
    yield proc
    proc.close()


def blob_rgba(size: int = 256) -> np.ndarray:
    """A test subject: an RGBA blob (two overlapping discs) on a transparent background, uint8."""
    yy, xx = np.mgrid[:size, :size] / size
    mask = ((xx - 0.5) ** 2 + (yy - 0.55) ** 2 < 0.35 ** 2) | ((xx - 0.3) ** 2 + (yy - 0.25) ** 2 < 0.15 ** 2)
    img = np.zeros((size, size, 4), np.uint8)
    img[..., :3] = (np.stack([xx, yy, 1 - xx], -1) * 255).astype(np.uint8)
    img[..., 3] = mask * 255
    return img


def png_bytes(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def blob_png() -> bytes:
    return png_bytes(blob_rgba())


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread for the test (align, refine, bake: thousands of small tensor ops, where a second
    thread only spins on a shared 2-core machine); the thread count restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
