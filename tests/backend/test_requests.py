"""Request handling is bounded, through the real subprocess: cancels, the wait queue, shutdown, a stuck worker.

A Cancel reaches only a request already running or waiting; requests waiting behind a busy worker are
limited in count and bytes (refused as ``busy``); Shutdown drops what waits; the end of input ends the
process even when the worker is stuck in a stage without a cancel point.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pytest

from backend import protocol as P
from backend.server import MAX_WAITING, MAX_WAITING_BYTES, Server
from backend.settings import BackendSettings

from .conftest import BackendProcess, blob_rgba, png_bytes

SMALL_PNG = np.frombuffer(png_bytes(blob_rgba(24)), np.uint8)
SLOW = {"steps": 10_000, "step_seconds": 0.05}


def _slow_backend(**env: str) -> BackendProcess:
    proc = BackendProcess(env={"HI3DGEN_TEST_ENGINES": "1", **env})
    proc.expect(P.Hello)
    return proc


def _start_slow(proc: BackendProcess, request_id: int) -> None:
    """A slow request that is running (its first progress arrived)."""
    proc.send(P.Generate(engine="test-slow", params=SLOW, image_bytes=SMALL_PNG), request_id)
    msg, rid = proc.expect(P.Progress)
    assert rid == request_id


def _until_error(proc: BackendProcess, request_id: int, timeout: float = 60.0) -> tuple[P.Error, list]:
    """Frames until the Error for ``request_id``; returns it and every (message, id) seen before it."""
    seen = []
    while True:
        msg, rid = proc.next(timeout)
        if isinstance(msg, P.Error) and rid == request_id:
            return msg, seen
        assert not (isinstance(msg, P.Done) and rid == request_id), f"request {rid} ran to the end"
        seen.append((msg, rid))


def _frames_until_eof(proc: BackendProcess, timeout: float = 60.0) -> list:
    seen = []
    while (item := proc.frames.get(timeout=timeout)) is not None:
        assert not isinstance(item, Exception), item
        seen.append(item)
    return seen


def _pong(proc: BackendProcess) -> P.Pong:
    proc.send(P.Ping(), 77_777)
    while True:
        msg, rid = proc.next(30)
        if isinstance(msg, P.Pong) and rid == 77_777:
            return msg


# ------------------------------------------------------------------------------------------ cancel


def test_cancel_for_an_unknown_id_does_not_cancel_a_later_request(backend):
    for rid in range(100, 140):
        backend.send(P.Cancel(), rid)
    backend.send(P.Generate(params={"resolution": 32}, image_bytes=SMALL_PNG), 120)
    out = backend.collect(120)
    assert out["error"] is None and out["done"] is not None


def test_a_cancel_reaches_a_waiting_request_only_once_sent():
    proc = _slow_backend()
    try:
        _start_slow(proc, 1)
        proc.send(P.Cancel(), 3)  # not sent yet: ignored
        proc.send(P.Generate(params={"resolution": 32}, image_bytes=SMALL_PNG), 2)
        proc.send(P.Generate(params={"resolution": 32}, image_bytes=SMALL_PNG), 3)
        proc.send(P.Cancel(), 2)  # waiting: cancelled before it runs
        proc.send(P.Cancel(), 1)
        error, _ = _until_error(proc, 1)
        assert error.code == "cancelled"
        error, _ = _until_error(proc, 2)
        assert error.code == "cancelled"
        out = proc.collect(3)
        assert out["done"] is not None and out["error"] is None
    finally:
        proc.close()


def test_cancels_leave_no_bookkeeping_behind():
    server = Server(io.BytesIO(), io.BytesIO(), BackendSettings(), engines={})
    for rid in range(20_000):
        server._dispatch(P.Cancel(), rid)
    sizes = [len(v) for v in vars(server).values() if isinstance(v, (set, dict, list))]
    assert max(sizes, default=0) == 0 and server.inbox.qsize() == 0


# ------------------------------------------------------------------------------------------ bounded queue


def test_waiting_requests_are_bounded_in_count():
    proc = _slow_backend()
    try:
        _start_slow(proc, 1)
        for rid in range(2, 2 + MAX_WAITING):
            proc.send(P.Generate(params={"resolution": 32}, image_bytes=SMALL_PNG), rid)
        refused = 2 + MAX_WAITING
        proc.send(P.Generate(params={"resolution": 32}, image_bytes=SMALL_PNG), refused)
        error, seen = _until_error(proc, refused)
        assert error.code == "busy" and "waiting" in error.message and "cancel" in error.hint
        assert not [m for m, rid in seen if rid != 1], "nothing but the running request's progress"
        assert _pong(proc).busy
        for rid in [*range(2, refused), 1]:
            proc.send(P.Cancel(), rid)
        for rid in range(1, refused):
            error, _ = _until_error(proc, rid)
            assert error.code == "cancelled"
        assert any(not _pong(proc).busy for _ in range(100)), "idle once the last error is out"
    finally:
        proc.close()


def test_waiting_requests_are_bounded_in_bytes():
    proc = _slow_backend()
    big = np.zeros(60 << 20, np.uint8)  # not an image: these are cancelled before anything decodes them
    try:
        _start_slow(proc, 1)
        allowed = MAX_WAITING_BYTES // big.nbytes
        for rid in range(2, 3 + allowed):
            proc.send(P.Generate(image_bytes=big), rid)
        error, _ = _until_error(proc, 2 + allowed)
        assert error.code == "busy" and "MiB" in error.message
        for rid in [*range(2, 2 + allowed), 1]:  # the waiting ones first, then the running one
            proc.send(P.Cancel(), rid)
        for rid in range(1, 2 + allowed):
            error, _ = _until_error(proc, rid)
            assert error.code == "cancelled"
    finally:
        proc.close()


# ------------------------------------------------------------------------------------------ ending


def test_shutdown_drops_the_requests_waiting_behind_it():
    proc = _slow_backend()
    _start_slow(proc, 1)
    proc.send(P.Generate(params={"resolution": 32}, image_bytes=SMALL_PNG), 2)
    proc.send(P.Shutdown())
    proc.send(P.Generate(params={"resolution": 32}, image_bytes=SMALL_PNG), 3)  # after Shutdown: refused
    frames = _frames_until_eof(proc)
    assert proc.proc.wait(timeout=60) == 0
    errors = {rid: m for m, rid in frames if isinstance(m, P.Error)}
    assert errors[1].code == "cancelled"
    assert errors[2].code == "cancelled" and "shutting down" in errors[2].message
    assert errors.get(3) is None or errors[3].code == "cancelled"
    ran = {rid for m, rid in frames if isinstance(m, (P.Progress, P.MeshStart, P.Done))}
    assert not ran & {2, 3}, "the waiting request never ran"


@pytest.mark.parametrize("ending", ["end_of_input", "shutdown"])
def test_a_stuck_worker_does_not_keep_the_process(ending):
    proc = _slow_backend(HI3DGEN_FAULT="stall@relief")
    proc.send(P.Generate(params={"resolution": 32}, image_bytes=SMALL_PNG), 1)
    for _ in range(1200):  # the worker takes the request, then says it stalls in the relief stage
        if b"fault: stalling" in b"".join(proc.stderr):
            break
        time.sleep(0.05)
    assert b"fault: stalling" in b"".join(proc.stderr), "the worker reached the stall"
    assert _pong(proc).busy, "the worker is stuck, the reader still answers"
    if ending == "shutdown":
        proc.send(P.Shutdown())
    else:
        proc.proc.stdin.close()
    try:
        code = proc.proc.wait(timeout=120)
    finally:
        if proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.wait()
    assert code == 0
    _frames_until_eof(proc)
    for _ in range(200):  # the stderr thread may still be reading the last lines
        if b"did not stop" in b"".join(proc.stderr):
            break
        time.sleep(0.05)
    assert b"did not stop" in b"".join(proc.stderr)
